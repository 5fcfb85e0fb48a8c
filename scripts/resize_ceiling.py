"""How much the cpu profile's x2 down/up-sampling alone costs: PSNR/SSIM of area-down + bilinear/bicubic-up of the
preprocessed validation slices against themselves.  PYTHONPATH=. .venv/bin/python scripts/resize_ceiling.py"""
import torch, numpy as np
from monai.bundle import ConfigParser
from monai.metrics import PSNRMetric, SSIMMetric
import bundle.data as D
p = ConfigParser(); p.read_config("configs/common.yaml"); p["output_dir"]="/tmp/cmrdiff_ceiling"
cases = D.discover_cases(__import__("os").environ.get("MYOPS_DIR", "../shared/data/myops2020"), "validation", p["validation_ids"])
vt = p.get_parsed_content("volume_transforms")
sl = D.build_slices(cases, vt, None)
x = torch.stack([s["image"] for s in sl]).float()  # N,3,256,256
print(x.shape)
down = torch.nn.functional.interpolate(x, size=(128,128), mode="area")
for mode in ["bilinear", "bicubic"]:
    up = torch.nn.functional.interpolate(down, size=(256,256), mode=mode, align_corners=False).clamp(0,1)
    for c, seq in enumerate("C0 DE T2".split()):
        ps = PSNRMetric(max_val=1.0)(up[:, c:c+1], x[:, c:c+1]); ss = SSIMMetric(spatial_dims=2, data_range=1.0)(up[:, c:c+1], x[:, c:c+1])
        print(mode, seq, f"PSNR {ps.mean():.2f}±{ps.std():.2f} SSIM {ss.mean():.4f}")
