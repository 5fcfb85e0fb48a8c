"""MONAI Label sample app serving CMRDiff synthesis (see monailabel_app/README.md).

    monailabel start_server --app monailabel_app --studies <folder of NIfTI files> --host 127.0.0.1 --port 8000

Models: ``cmrdiff_lge`` (C0 + T2 -> DE), ``cmrdiff_t2`` (C0 + DE -> T2), ``cmrdiff_bssfp`` (T2 + DE -> C0).
Conf options (``--conf KEY VALUE``): ``bundle_root`` (default: the folder above this app, i.e. the repository),
``profile`` (default: the config's, ``cpu``), ``models`` (comma-separated tasks to expose, default all three) and
any sampler knob of configs/inference.yaml as the default of every request (e.g. ``num_inference_steps 10``).

Each model builds its networks once, on its first request, and keeps them (lib/infer_synthesis.py). Bad requests are
answered 4xx with a message, and the server keeps serving: an unknown model or image id -> 404 (here, before the
task runs: MONAI Label would otherwise turn an unknown image id into an empty path), a bad knob or a missing
condition image -> 400 (the task).
"""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path

from fastapi import HTTPException
from monailabel.interfaces.app import MONAILabelApp
from monailabel.interfaces.tasks.infer_v2 import InferTask

from lib.infer_synthesis import SynthesisInferTask

logger = logging.getLogger(__name__)

TASKS = ("lge", "t2", "bssfp")


class CMRDiffApp(MONAILabelApp):
    def __init__(self, app_dir, studies, conf):
        conf = dict(conf or {})
        self.bundle_root = Path(conf.get("bundle_root") or Path(app_dir).resolve().parent).resolve()
        if not (self.bundle_root / "configs" / "inference.yaml").is_file():
            raise FileNotFoundError(f"bundle_root {self.bundle_root} holds no configs/inference.yaml "
                                    "(set it with --conf bundle_root <path>)")
        if str(self.bundle_root) not in sys.path:  # the configs `$import bundle.*`
            sys.path.insert(0, str(self.bundle_root))
        self.tasks = [t.strip() for t in str(conf.get("models") or ",".join(TASKS)).split(",") if t.strip()]
        meta = json.loads((self.bundle_root / "configs" / "metadata.json").read_text())
        super().__init__(
            app_dir=app_dir,
            studies=studies,
            conf=conf,
            name="CMRDiff",
            description="Multi-sequence cardiac MR synthesis (bSSFP, LGE, T2): one sequence from the other two",
            version=str(meta.get("version", "")),
        )

    def init_infers(self) -> dict[str, InferTask]:
        infers: dict[str, InferTask] = {}
        for t in self.tasks:
            task = SynthesisInferTask(self.bundle_root, t, self.conf)
            if not task.is_valid():
                logger.warning(f"cmrdiff_{t}: weights missing ({', '.join(map(str, task.weights()))}); not served")
            infers[f"cmrdiff_{t}"] = task
        return infers

    def infer(self, request, datastore=None):
        """MONAI Label's infer, after two checks that give a 404 with a clear message instead of a 500 (unknown
        model) or a misleading "the image '' ..." (an image id that is not in the datastore: MONAI Label maps it to
        an empty path)."""
        model = request.get("model")
        if model not in self._infers:
            raise HTTPException(status_code=404, detail=f"model {model!r} not found; this server has "
                                                        f"{sorted(self._infers)}")
        image = request.get("image")
        if isinstance(image, str) and image and not os.path.exists(image):
            ds = datastore if datastore else self.datastore()
            if not ds.get_image_uri(image):
                raise HTTPException(status_code=404, detail=f"image id {image!r} not found in the datastore "
                                                            f"({self.studies}); ids are file names without "
                                                            f"extension, e.g. GET /datastore/?output=all lists them")
        return super().infer(request, datastore)
