"""MONAI Label sample app serving CMRDiff synthesis (see monailabel_app/README.md).

    monailabel start_server --app monailabel_app --studies <folder of NIfTI files> --host 127.0.0.1 --port 8000

Models: ``cmrdiff_lge`` (C0 + T2 -> DE), ``cmrdiff_t2`` (C0 + DE -> T2), ``cmrdiff_bssfp`` (T2 + DE -> C0).
Conf options (``--conf KEY VALUE``): ``bundle_root`` (default: the folder above this app, i.e. the repository),
``profile`` (default: the config's, ``cpu``), ``models`` (comma-separated tasks to expose, default all three) and
any sampler knob of configs/inference.yaml as the default of every request (e.g. ``num_inference_steps 10``).
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

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
