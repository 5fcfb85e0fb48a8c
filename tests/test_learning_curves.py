"""scripts/learning_curves.py: the curve is read from the validation handler's log lines (a resumed epoch's last
line wins), the table samples it, names the best epoch and the last one, and replaces only its marked block."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from tests.conftest import md_row

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "learning_curves.py"
spec = importlib.util.spec_from_file_location("learning_curves", SCRIPT)
learning_curves = importlib.util.module_from_spec(spec)
spec.loader.exec_module(learning_curves)

LOG = """2026-11-27 17:11:16,383 - INFO - Epoch[20] Metrics -- val_psnr: 14.8270 
noise Epoch[20] Complete. Time taken: 00:00:03
2026-11-27 17:12:16,383 - INFO - Epoch[40] Metrics -- val_psnr: 15.5000 val_loss: 0.2500
2026-11-27 17:13:16,383 - INFO - Epoch[60] Metrics -- val_psnr: 15.1000 
2026-11-27 17:14:16,383 - INFO - Epoch[60] Metrics -- val_psnr: 15.3000 
"""


def test_curve_and_table(tmp_path):
    curve = learning_curves.read_curve(LOG, "val_psnr")
    assert curve == {20: 14.827, 40: 15.5, 60: 15.3}  # the resumed epoch 60's second line wins
    assert learning_curves.read_curve(LOG, "val_loss") == {40: 0.25}
    log = tmp_path / "run.log"
    log.write_text(LOG)
    out = learning_curves.table([log], "val_psnr", every=20).splitlines()
    assert md_row(out[0]) == ("log", [20, 40, 60])  # the epochs, then best (epoch) and last
    assert md_row(out[2]) == ("`run.log`", [14.83, 15.5, 15.3, 15.5, 40, 15.3, 60])
    low = learning_curves.table([log], "val_psnr", every=20, higher_is_better=False).splitlines()[2]
    assert md_row(low)[1][-4:] == [14.83, 20, 15.3, 60]


def test_doc_block_replaced_and_errors(tmp_path):
    log = tmp_path / "run.log"
    log.write_text(LOG)
    doc = tmp_path / "doc.md"
    doc.write_text("before\n<!-- lc:begin -->\nold\n<!-- lc:end -->\nafter\n")
    assert learning_curves.main([str(log), "--every", "20", "--doc", str(doc), "--marker", "lc"]) == 0
    text = doc.read_text()
    assert text.startswith("before\n<!-- lc:begin -->\n| log |") and text.endswith("<!-- lc:end -->\nafter\n")
    assert "old" not in text and "15.50 (40)" in text
    with pytest.raises(SystemExit, match="no 'val_ssim' lines"):
        learning_curves.main([str(log), "--metric", "val_ssim"])
    with pytest.raises(SystemExit, match="not found"):
        learning_curves.main([str(tmp_path / "absent.log")])
    with pytest.raises(SystemExit, match="no <!-- other:begin -->"):
        learning_curves.main([str(log), "--doc", str(doc), "--marker", "other"])
    assert doc.read_text() == text
