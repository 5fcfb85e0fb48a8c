"""MONAI Label InferTask that runs the bundle's own synthesis workflow (configs/common.yaml + configs/inference.yaml)
for one case and returns the synthesized sequence as NIfTI on the input's grid.

Nothing of the pipeline is duplicated: the task builds a ``monai.bundle.ConfigWorkflow`` from the bundle's configs,
overrides ``task``, ``input_files``, ``case_name``, ``output_dir`` (a temporary folder) and the sampler knobs, runs
its ``initialize`` and ``run`` lists, and hands the written ``<case>_<SEQ>_synth.nii.gz`` to the server.

Where the two condition images come from (first match wins, per condition):
1. request params naming them by sequence, e.g. ``{"C0": "/data/p1_bssfp.nii.gz", "T2": "/data/p1_t2.nii.gz"}``
   (a relative path is taken relative to the folder of the request's image);
2. the request's image itself when its file is named ``<case>_<SEQ>.nii[.gz]`` (MyoPS naming) and SEQ is a condition;
3. the file ``<case>_<SEQ>.nii.gz`` (or ``.nii``) next to the request's image.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Dict, Tuple, Union

from monailabel.interfaces.tasks.infer_v2 import InferTask, InferType

logger = logging.getLogger(__name__)

SEQUENCES = ("C0", "DE", "T2")
MYOPS_NAME = re.compile(r"^(?P<case>.+)_(?P<seq>C0|DE|T2)\.nii(\.gz)?$")
# sampler knobs of configs/inference.yaml a request may set (defaults are read from the config itself)
KNOBS = ("num_inference_steps", "guidance_scale_1", "guidance_scale_2", "strength", "guide", "num_samples", "seed",
         "cache_interval")


class RequestError(ValueError):
    """A bad request (missing condition image, bad parameter, input the bundle rejects); answered with HTTP 400."""


def _http_error(msg: str) -> Exception:
    try:  # inside the server: a 400 with the message instead of a bare 500
        from fastapi import HTTPException

        return HTTPException(status_code=400, detail=msg)
    except ImportError:  # pragma: no cover - fastapi is a server dependency
        return RequestError(msg)


def _cast(name: str, value: Any, default: Any) -> Any:
    """Request/conf values arrive as JSON or as strings (``--conf``): cast them to the config default's type."""
    if name == "guide":
        if value is None or str(value).strip().lower() in ("", "none", "null", "default"):
            return None
        v = str(value).strip()
        if v not in (*SEQUENCES, "regression"):
            raise RequestError(f"guide must be one of {[*SEQUENCES, 'regression']} or null, got {value!r}")
        return v
    try:
        if isinstance(default, bool):
            return str(value).strip().lower() in ("1", "true", "yes")
        if isinstance(default, int):
            f = float(value)
            if f != int(f):
                raise ValueError
            return int(f)
        if isinstance(default, float):
            return float(value)
    except (TypeError, ValueError):
        raise RequestError(f"{name} must be a {type(default).__name__}, got {value!r}") from None
    return value


class SynthesisInferTask(InferTask):
    """Synthesizes the target sequence of ``task`` (``lge``, ``t2`` or ``bssfp``) from the case's two other ones."""

    def __init__(self, bundle_root: Union[str, Path], task: str, conf: Dict[str, Any] | None = None):
        from monai.bundle import ConfigParser

        self.bundle_root = Path(bundle_root).resolve()
        self.config_files = [str(self.bundle_root / "configs" / f) for f in ("common.yaml", "inference.yaml")]
        raw = ConfigParser()
        raw.read_config(self.config_files)  # raw values only: nothing is instantiated here
        tasks = raw.get("tasks")
        if task not in tasks:
            raise ValueError(f"unknown task {task!r}: expected one of {sorted(tasks)}")
        self.task, self.target, self.conditions = task, tasks[task]["target"], list(tasks[task]["conditions"])
        conf = dict(conf or {})
        self.profile = str(conf.get("profile") or raw.get("profile"))
        defaults = {k: raw.get(k) for k in KNOBS}
        defaults["guide"] = defaults["guide"] if defaults["guide"] is not None else ""  # shown as a text field
        self._types = dict(defaults, num_inference_steps=0, num_samples=0, seed=0, cache_interval=0)
        for k in KNOBS:  # app-level defaults, e.g. `--conf num_inference_steps 10`
            if k in conf:
                defaults[k] = _cast(k, conf[k], self._types[k]) if k != "guide" else (conf[k] or "")
        self._lock = threading.Lock()  # one synthesis at a time (set_determinism and the networks are global)
        super().__init__(
            type=InferType.OTHERS,
            labels=None,
            dimension=3,
            description=(f"CMRDiff: synthesize {self.target} from {' + '.join(self.conditions)} "
                         f"(task {task}, profile {self.profile}); returns <case>_{self.target}_synth.nii.gz"),
            config=defaults,
        )

    # -- MONAI Label interface ------------------------------------------------------------------------------------
    def weights(self) -> list[Path]:
        models = self.bundle_root / "models"
        diff = [models / f"diffusion_{self.profile}_{self.task}.pt", models / f"diffusion_{self.profile}_any.pt"]
        return [models / f"autoencoder_{self.profile}.pt", next((p for p in diff if p.is_file()), diff[0])]

    def get_path(self, validate=True):
        return [str(p) for p in self.weights()]

    def is_valid(self) -> bool:
        return all(p.is_file() for p in self.weights())

    def info(self) -> Dict[str, Any]:
        d = super().info()
        d.update(target=self.target, conditions=self.conditions, task=self.task)
        return d

    def __call__(self, request) -> Tuple[Union[str, None], Dict]:
        try:
            return self._run(dict(request))
        except RequestError as e:
            raise _http_error(str(e)) from e
        except Exception as e:  # noqa: BLE001 - bad input the bundle rejects becomes a 400, bugs stay 500
            from bundle.__main__ import USER_ERRORS, root_cause

            root = root_cause(e)
            if isinstance(root, USER_ERRORS) or "nibabel" in type(root).__module__:
                raise _http_error(str(root).strip().strip('"') or type(root).__name__) from e
            raise

    # -- implementation -------------------------------------------------------------------------------------------
    def condition_files(self, request: Dict[str, Any]) -> Tuple[str, Dict[str, str]]:
        """(case name, {condition: path}) for the request; see the module docstring for the lookup order."""
        image = request.get("image")
        image = str(image) if isinstance(image, (str, os.PathLike)) and str(image) else None
        folder = Path(image).parent if image else Path.cwd()
        m = MYOPS_NAME.match(Path(image).name) if image else None
        case = str(request.get("case_name") or (m.group("case") if m else "")) or (
            re.sub(r"\.nii(\.gz)?$", "", Path(image).name) if image else "case")
        files: Dict[str, str] = {}
        for c in self.conditions:
            given = request.get(c)
            if given:
                p = Path(str(given))
                p = p if p.is_absolute() else folder / p
                if not p.is_file():
                    raise RequestError(f"condition image {c} = {given!r} not found ({p})")
                files[c] = str(p)
            elif m and m.group("seq") == c:
                files[c] = image
            elif m:
                found = [folder / f"{m.group('case')}_{c}{ext}" for ext in (".nii.gz", ".nii")]
                hit = next((p for p in found if p.is_file()), None)
                if hit is None:
                    raise RequestError(f"task {self.task} needs the {c} image of case {m.group('case')!r}: "
                                       f"{found[0]} not found; put it next to {Path(image).name} or pass "
                                       f'params {{"{c}": "<path>"}}')
                files[c] = str(hit)
            else:
                raise RequestError(f"task {self.task} needs {' and '.join(self.conditions)}: the image "
                                   f"{Path(image).name if image else '(none)'} is not named <case>_<C0|DE|T2>.nii.gz, "
                                   f"so pass the conditions as params, e.g. "
                                   f'{{"{self.conditions[0]}": "<path>", "{self.conditions[1]}": "<path>"}}')
        return case, files

    def _run(self, request: Dict[str, Any]) -> Tuple[str, Dict[str, Any]]:
        from monai.bundle import ConfigWorkflow

        case, files = self.condition_files(request)
        knobs = {}
        for k in KNOBS:
            v = request.get(k, self._config.get(k))
            knobs[k] = _cast(k, v, self._types[k])
        out_dir = Path(tempfile.mkdtemp(prefix="cmrdiff_monailabel_"))
        t0 = time.time()
        try:
            with self._lock:
                wf = ConfigWorkflow(
                    config_file=self.config_files,
                    meta_file=str(self.bundle_root / "configs" / "metadata.json"),
                    logging_file=False,  # keep the server's logging as it is
                    workflow_type="infer",
                    bundle_root=str(self.bundle_root),
                    profile=self.profile,
                    task=self.task,
                    input_files=files,
                    case_name=case,
                    output_dir=str(out_dir),
                    **knobs,
                )
                wf.initialize()
                wf.run()
                wf.finalize()
            synth = out_dir / f"{case}_{self.target}_synth.nii.gz"
            if not synth.is_file():
                raise RuntimeError(f"the synthesis workflow did not write {synth}")
            fd, result = tempfile.mkstemp(prefix=f"{case}_{self.target}_synth_", suffix=".nii.gz")
            os.close(fd)
            shutil.move(str(synth), result)  # the server deletes it once sent
        finally:
            shutil.rmtree(out_dir, ignore_errors=True)
        latency = round(time.time() - t0, 3)
        logger.info(f"CMRDiff {self.task}: {case} -> {result} in {latency} s")
        return result, {
            "task": self.task,
            "target": self.target,
            "case": case,
            "conditions": files,
            "params": knobs,
            "latencies": {"total": latency},
        }
