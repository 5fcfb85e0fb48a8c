"""MONAI Label sample app serving CMRDiff synthesis (see monailabel_app/README.md).

    monailabel start_server --app monailabel_app --studies <folder of NIfTI files> --host 127.0.0.1 --port 8000

Models: ``cmrdiff_lge`` (C0 + T2 -> DE), ``cmrdiff_t2`` (C0 + DE -> T2), ``cmrdiff_bssfp`` (T2 + DE -> C0).
Conf options (``--conf KEY VALUE``): ``bundle_root`` (default: the folder above this app, i.e. the repository),
``profile`` (default: the config's, ``cpu``), ``models`` (comma-separated tasks to expose, default all three) and
any sampler knob of configs/inference.yaml as the default of every request (e.g. ``num_inference_steps 10``).

Each model builds its networks once, on its first request, and keeps them (lib/infer_synthesis.py). Bad requests are
answered 4xx with a message, and the server keeps serving: an unknown model or image id -> 404 (here, before the
task runs: MONAI Label would otherwise turn an unknown image id into an empty path), an image path outside the
studies folder -> 403 (here: MONAI Label reads any existing path), a bad knob, case name or a missing condition
image -> 400 (the task). No request field ever reaches the bundle's config parser as text (lib/validation.py).
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
from lib.validation import RequestError, check_image

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
            task = SynthesisInferTask(self.bundle_root, t, self.conf, studies=self.studies)
            if not task.is_valid():
                logger.warning(f"cmrdiff_{t}: weights missing ({', '.join(map(str, task.weights()))}); not served")
            infers[f"cmrdiff_{t}"] = task
        return infers

    def infer(self, request, datastore=None):
        """MONAI Label's infer, after checks of the raw request: the model exists (404), ``image`` is a datastore id
        of safe characters or a path inside the studies folder (400 / 403: MONAI Label would otherwise read any
        existing path the request names, an uploaded file's temporary path included), and the id is in the datastore
        (404 instead of MONAI Label's misleading "the image '' ..." for an id it maps to an empty path)."""
        model = request.get("model")
        if not isinstance(model, str) or model not in self._infers:
            raise HTTPException(status_code=404, detail=f"model {str(model)[:60]!r} not found; this server has "
                                                        f"{sorted(self._infers)}")
        image = request.get("image")
        try:
            check_image(image, Path(self.studies))
        except RequestError as e:
            raise HTTPException(status_code=e.status, detail=str(e)) from None
        if not os.path.exists(image):
            ds = datastore if datastore else self.datastore()
            if not ds.get_image_uri(image):
                raise HTTPException(status_code=404, detail=f"image id {image!r} not found in the datastore "
                                                            f"({self.studies}); ids are file names without "
                                                            f"extension, e.g. GET /datastore/?output=all lists them")
        return super().infer(request, datastore)
