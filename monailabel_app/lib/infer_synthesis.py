"""MONAI Label InferTask that runs the bundle's own synthesis workflow (configs/common.yaml + configs/inference.yaml)
for one case and returns the synthesized sequence as NIfTI on the input's grid.

Nothing of the pipeline is duplicated: the task runs a ``monai.bundle.ConfigWorkflow`` of the bundle's configs with
``task``, ``input_files``, ``case_name``, ``output_dir`` (a temporary folder) and the sampler knobs overridden, runs its
``initialize`` and ``run`` lists, and hands the written ``<case>_<SEQ>_synth.nii.gz`` to the server.

Networks stay loaded between requests: on the first request of a model (under the model's lock) one workflow is
initialized in full, which builds the diffusion network, the autoencoder (+ its latent scale factor) and the guide
regressor, and loads the shipped weights through the config's own explicit loading steps. Every request
then gets a fresh, cheap workflow (config parsing only) into which these objects are injected as overrides
(``network``, ``autoencoder``, ``scale_factor``, ``guide_network``) and whose ``initialize`` list skips the
weight-loading steps (``load_*``); the sampler, data pipeline and evaluator are rebuilt from the config per request, so one request's
knobs never leak into the next. ``networks_built`` in the model's ``/info/`` entry counts the builds (1 once used).

No request value reaches the config parser as text it could interpret (lib/validation.py): the case name is checked
against an allow-list, image and condition paths must resolve inside the studies folder and are handed over as
``pathlib.Path`` objects, knobs are cast and range-checked, and :func:`~lib.validation.assert_plain_data` guards the
overrides. Bad requests raise ``fastapi.HTTPException`` (MONAI Label's ``/infer`` endpoint lets it through as that
status with ``{"detail": message}``): a bad case name, an out-of-range or wrong-type knob or a missing condition image
-> 400; a path outside the studies folder or with ``..`` -> 403; input the bundle rejects (``bundle.errors.UserError``,
unreadable NIfTI) -> 400. The app (``main.py``) checks the raw ``image`` the same way and answers an unknown image id
or model with 404 before the task runs.

Where the two condition images come from (first match wins, per condition):
1. request params naming them by sequence, e.g. ``{"C0": "p1_bssfp.nii.gz", "T2": "sub/p1_t2.nii.gz"}``
   (relative to the folder of the request's image; an absolute path must lie inside the studies folder);
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

from .validation import (KNOBS, MYOPS_NAME, RequestError, assert_plain_data, cast_knob, check_name, check_path,
                         is_safe_name, knob_types, range_texts, validate_knob, validate_knobs)

logger = logging.getLogger(__name__)



def _malloc_trim() -> None:
    """Hand the heap memory freed by a request back to the OS (glibc ``malloc_trim``; a no-op elsewhere): without it
    the RSS keeps the high-water mark of the largest request (e.g. one with more num_samples) for good."""
    global _LIBC
    if _LIBC is None:
        try:
            import ctypes

            _LIBC = ctypes.CDLL("libc.so.6")
            _LIBC.malloc_trim.argtypes = [ctypes.c_size_t]
        except (OSError, AttributeError):
            _LIBC = False
    if _LIBC:
        _LIBC.malloc_trim(0)


_LIBC = None


def _http_error(e: RequestError) -> Exception:
    try:  # inside the server: a 4xx with the message instead of a bare 500
        from fastapi import HTTPException

        return HTTPException(status_code=e.status, detail=str(e))
    except ImportError:  # pragma: no cover - fastapi is a server dependency
        return e


class SynthesisInferTask(InferTask):
    """Synthesizes the target sequence of ``task`` (``lge``, ``t2`` or ``bssfp``) from the case's two other ones."""

    def __init__(self, bundle_root: Union[str, Path], task: str, conf: Dict[str, Any] | None = None,
                 studies: Union[str, Path, None] = None):
        from monai.bundle import ConfigParser

        self.bundle_root = Path(bundle_root).resolve()
        # images and condition files are read only inside this folder (the server's --studies); None: the current
        # working directory (a task used outside a server)
        self.studies = Path(studies if studies is not None else Path.cwd()).resolve()
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
        self._types = knob_types(defaults)
        for k in KNOBS:  # app-level defaults, e.g. `--conf num_inference_steps 10`
            if k in conf:
                v = validate_knob(k, cast_knob(k, conf[k], self._types[k]))
                defaults[k] = v if k != "guide" else (v or "")
        # one synthesis at a time per model: the shared networks, the sampler's global RNG seeding (set_determinism)
        self._lock = threading.Lock()
        self._base = None  # the first workflow, initialized once: holds the networks (see _networks)
        self._nets: Dict[str, Any] = {}
        self._skip_init: list = []  # the config's `initialize` list without the weight loading
        self._extra: Dict[str, Any] = {}  # further per-request overrides (no PNG preview)
        self.networks_built = 0  # how often the networks were built (and weights loaded): 1 once the model is used
        self.requests = {"ok": 0, "rejected": 0, "failed": 0}
        self._stats_lock = threading.Lock()
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
        d.update(target=self.target, conditions=self.conditions, task=self.task,
                 networks_built=self.networks_built, networks_loaded=sorted(self._nets), requests=dict(self.requests),
                 knob_ranges=range_texts())
        return d

    def _count(self, outcome: str) -> None:
        with self._stats_lock:
            self.requests[outcome] += 1

    def __call__(self, request) -> Tuple[Union[str, None], Dict]:
        try:
            out = self._run(dict(request))
        except RequestError as e:
            self._count("rejected")
            raise _http_error(e) from e
        except Exception as e:  # noqa: BLE001 - bad input the bundle rejects becomes a 400, bugs stay 500
            from bundle.__main__ import is_user_error, root_cause

            root = root_cause(e)
            if is_user_error(root):
                self._count("rejected")
                raise _http_error(RequestError(str(root).strip().strip('"') or type(root).__name__)) from e
            self._count("failed")
            raise
        self._count("ok")
        return out

    # -- implementation -------------------------------------------------------------------------------------------
    def condition_files(self, request: Dict[str, Any]) -> Tuple[str, Dict[str, Path]]:
        """(case name, {condition: path}) for the request; see the module docstring for the lookup order. Every path
        is resolved inside the studies folder (ForbiddenPath otherwise) and the case name is checked against the
        allow-list (lib/validation.py), so nothing of the request reaches the config parser as text it interprets."""
        raw = request.get("image")
        image = check_path(raw, self.studies, "image") if raw not in (None, "") else None
        folder = image.parent if image else self.studies
        m = MYOPS_NAME.match(image.name) if image else None
        if request.get("case_name") not in (None, ""):
            case = check_name(request["case_name"], "case_name")
        else:
            derived = m.group("case") if m else (re.sub(r"\.nii(\.gz)?$", "", image.name) if image else "case")
            if not is_safe_name(derived):
                raise RequestError(f"the case name {derived[:60]!r} taken from the image's file name has characters "
                                   "other than A-Z a-z 0-9 _ . -: pass a case_name")
            case = derived
        files: Dict[str, Path] = {}
        for c in self.conditions:
            given = request.get(c)
            if given not in (None, ""):
                p = check_path(given, self.studies, c, base=folder)
                if not p.is_file():
                    raise RequestError(f"condition image {c} = {str(given)[:80]!r} not found in the studies folder")
                files[c] = p
            elif m and m.group("seq") == c:
                files[c] = image
            elif m:
                found = [folder / f"{m.group('case')}_{c}{ext}" for ext in (".nii.gz", ".nii")]
                hit = next((p for p in found if p.is_file()), None)
                if hit is None:
                    raise RequestError(f"task {self.task} needs the {c} image of case {m.group('case')!r}: "
                                       f"{found[0].name} not found next to {image.name}; put it there or pass "
                                       f'params {{"{c}": "<file in the studies folder>"}}')
                files[c] = check_path(hit, self.studies, c)
            elif not image:
                raise RequestError(f"no input image: give an image id of the datastore, or pass the conditions of "
                                   f"task {self.task} as params, e.g. "
                                   f'{{"{self.conditions[0]}": "<file>", "{self.conditions[1]}": "<file>"}}')
            else:
                raise RequestError(f"task {self.task} needs {' and '.join(self.conditions)}: the image "
                                   f"{image.name} is not named <case>_<C0|DE|T2>.nii.gz, "
                                   f"so pass the conditions as params, e.g. "
                                   f'{{"{self.conditions[0]}": "<file>", "{self.conditions[1]}": "<file>"}}')
        return case, files

    def knobs(self, request: Dict[str, Any]) -> Dict[str, Any]:
        """The sampler knobs of this request: each from the request, else the task's default (config/--conf), cast
        and checked against its allowed range (a RequestError naming the knob otherwise). Built fresh per request,
        so nothing of one request carries over to the next."""
        return validate_knobs(request, self._config, self._types, self.task, self.conditions)

    def _workflow(self, **override: Any):
        from monai.bundle import ConfigWorkflow

        return ConfigWorkflow(
            config_file=self.config_files,
            meta_file=str(self.bundle_root / "configs" / "metadata.json"),
            logging_file=False,  # keep the server's logging as it is
            workflow_type="infer",
            bundle_root=str(self.bundle_root),
            profile=self.profile,
            task=self.task,
            **override,
        )

    def _networks(self, guide: bool) -> Dict[str, Any]:
        """The model's networks with their weights, built on first use and kept: ``network`` (diffusion net),
        ``autoencoder``, ``scale_factor`` and ``guide_network`` (passed on only to requests with ``guide: regression``).
        Called under ``self._lock``."""
        if self._base is None:
            t0 = time.time()
            tmp = Path(tempfile.mkdtemp(prefix="cmrdiff_monailabel_init_"))
            try:
                # the config's own initialize list builds the networks and loads the weights; guide `regression` so
                # that its load_guide step loads the regressor too
                base = self._workflow(output_dir=str(tmp), guide="regression")
                base.initialize()
                p = base.parser
                nets = {k: p.get_parsed_content(k) for k in ("network", "autoencoder", "scale_factor", "guide_network",
                                                         "texture_model")}
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
            init = list(p.get("initialize"))
            # the weight-loading steps (load_autoencoder, load_diffusion, load_guide) ran once, above
            skip = [e for e in init if "load_" not in str(e)]
            if len(skip) == len(init):  # a request workflow would load the weights again: refuse, loudly
                raise RuntimeError("configs/inference.yaml `initialize` has no weight-loading step (load_diffusion) "
                                   "to skip per request; update monailabel_app/lib/infer_synthesis.py")
            extra = {}
            if str(p.get("save_outputs#_target_", "")).endswith("SaveSynthesisd"):
                extra["save_outputs#preview"] = False  # the server returns the NIfTI only
            self._base, self._nets, self._skip_init, self._extra = base, nets, skip, extra
            self.networks_built += 1
            logger.info(f"CMRDiff {self.task}: networks built and weights loaded in {time.time() - t0:.2f} s "
                        f"(build {self.networks_built}); kept for later requests")
        return dict(self._nets, guide_network=self._nets.get("guide_network") if guide else None)

    def _run(self, request: Dict[str, Any]) -> Tuple[str, Dict[str, Any]]:
        # cheap checks first, outside the lock: a bad request never waits behind a synthesis
        case, files = self.condition_files(request)
        knobs = self.knobs(request)
        out_dir = Path(tempfile.mkdtemp(prefix="cmrdiff_monailabel_"))
        t0 = time.time()
        try:
            with self._lock:
                wait = time.time() - t0
                nets = self._networks(guide=knobs["guide"] == "regression")
                data = dict(input_files=files, case_name=case, output_dir=str(out_dir), **knobs)
                assert_plain_data(data)  # validated values only: nothing the config parser would interpret
                wf = self._workflow(initialize=list(self._skip_init), **self._extra, **nets, **data)
                wf.initialize()
                wf.run()
                wf.finalize()
                del wf
                _malloc_trim()
            synth = out_dir / f"{case}_{self.target}_synth.nii.gz"
            if not synth.is_file():
                raise RuntimeError(f"the synthesis workflow did not write {synth}")
            fd, result = tempfile.mkstemp(prefix=f"{case}_{self.target}_synth_", suffix=".nii.gz")
            os.close(fd)
            shutil.move(str(synth), result)  # the server deletes it once sent
        finally:
            shutil.rmtree(out_dir, ignore_errors=True)
        latency = round(time.time() - t0, 3)
        logger.info(f"CMRDiff {self.task}: {case} -> {result} in {latency} s (waited {wait:.2f} s for the lock)")
        return result, {
            "task": self.task,
            "target": self.target,
            "case": case,
            "conditions": {c: str(p.relative_to(self.studies)) for c, p in files.items()},
            "params": knobs,
            "latencies": {"total": latency, "lock_wait": round(wait, 3)},
        }
