"""Rule in docs/history.md ("intensity standardization of a synthetic bSSFP"): CMRDiff's bSSFP mapped by rank onto the
training population's bSSFP quantile function, then segmented with the real T2 + LGE by the three-sequence segmenter
(configs/segment.yaml), Dice on the input grid as segment_routes.py.
    PYTHONPATH=. .venv/bin/python docs/logs/segmenter/quantile_route.py tune|validation   (output: quantile_route.log)"""
import glob
import re
import sys
import tempfile
from pathlib import Path

import nibabel as nib
import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from contrast import DATA, TUNE_IDS, load, training_paths  # noqa: E402

import segment_routes as R  # noqa: E402  (its split, cases and helpers; argv[1])

Q = np.linspace(0, 1, 201)


def scaled(im: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    im = np.clip(im / np.percentile(im, 99.5), 0, 1)
    return im, im > 0.05


train_ids = [int(re.search(r"_(\d+)_", f).group(1)) for f in sorted(glob.glob(f"{DATA}/train25/myops_training_*_C0.nii.gz"))]
if R.split == "tune":
    train_ids = [i for i in train_ids if i not in TUNE_IDS]
ref = np.mean([np.quantile(im[body], Q) for im, body in (scaled(load(training_paths(i, "C0")[0])) for i in train_ids)],
              axis=0)
out = Path(tempfile.mkdtemp(prefix="quantile_route_")) / "bssfp"
out.mkdir()
for i in R.ids:
    src = Path(R.synth) / "bssfp" / f"myops_{R.kind}_{i}_C0_synth.nii.gz"
    img = nib.load(str(src))
    im, body = scaled(np.asarray(img.dataobj, dtype=np.float32))
    cal = im.copy()
    cal[body] = np.interp(np.argsort(np.argsort(im[body])) / (body.sum() - 1), Q, ref)
    nib.save(nib.Nifti1Image(cal.astype(np.float32), img.affine, img.header), str(out / src.name))
R.run(R.tmp / "cal", "--dataset_dir", str(R.flat("bssfp", str(out.parent))), "--case_ids", str(R.ids))
d = R.dice(R.tmp / "cal").mean(0)
print(f"# {R.split}: C0 missing: CMRDiff's C0 quantile-mapped onto {len(train_ids)} training cases + three-sequence "
      f"segmenter (lv / rv / myo / edema / scar)\n{'calibrated':55s} " + " ".join(f"{x:.3f}" for x in d))
