"""Integration test of the MONAI Label sample app (monailabel_app/): a real `monailabel start_server` on 127.0.0.1,
real inference requests, the returned NIfTI checked against the input's geometry, the server always stopped.

Needs the optional environment of `make monailabel`; run with `make test-integration`. Elsewhere it skips. The load test (a smaller run of bench/monailabel_load.py) also
checks that the networks are built once and kept, and that bad requests are 4xx while the server keeps serving.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.integration

# `make test-integration` sets CMRDIFF_REQUIRE_MONAILABEL=1: there a missing or broken install fails instead of skipping
REQUIRED = os.environ.get("CMRDIFF_REQUIRE_MONAILABEL") == "1"
if REQUIRED:
    import monailabel.interfaces.app  # noqa: F401
    import requests
else:
    pytest.importorskip(
        "monailabel.interfaces.app",
        reason="monailabel is not installed in this environment: run `make monailabel` then `make test-integration`",
    )
    requests = pytest.importorskip("requests", reason="requests (a monailabel server dependency) is not installed")

import nibabel as nib  # noqa: E402

from bundle.phantom import make_phantom_dataset  # noqa: E402
from tests.conftest import free_port  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
APP = ROOT / "monailabel_app"
BIN = Path(sys.executable).parent  # the venv's bin: the `monailabel` launcher runs `python` from PATH
LAUNCHER = BIN / "monailabel"
STARTUP_TIMEOUT_S = 120


def _stop(proc: subprocess.Popen) -> None:
    """Terminate the server's process group (it was started in a new session), then kill it if it lingers."""
    if proc.poll() is not None:
        return
    for sig, wait_s in ((signal.SIGTERM, 15), (signal.SIGKILL, 10)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait_s)
            return
        except subprocess.TimeoutExpired:
            continue


def _tree(root: Path) -> dict:
    """{relative path: (size, mtime)} of the files under ``root`` but the server's log (the state a hostile request
    must not change)."""
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(root.rglob("*"))
            if p.is_file() and p.name != "server.log"}


def _log_tail(log: Path, n: int = 4000) -> str:
    return log.read_text(errors="replace")[-n:] if log.exists() else "(no server log)"


@pytest.mark.skipif(not LAUNCHER.is_file() and not REQUIRED, reason=f"no `monailabel` launcher next to {sys.executable}")
def test_server_synthesizes_nifti_on_input_grid(tmp_path):
    assert LAUNCHER.is_file(), f"no `monailabel` launcher next to {sys.executable}"
    data = make_phantom_dataset(tmp_path / "data", train_ids=(), validation_ids=(), test_ids=(201,))
    case = "myops_test_201"
    studies = tmp_path / "studies"
    studies.mkdir()
    for seq in ("C0", "T2"):  # the conditions of task lge; DE is deliberately absent
        shutil.copy(data / "test20" / f"{case}_{seq}.nii.gz", studies)
    ref = nib.load(str(studies / f"{case}_C0.nii.gz"))

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}", OMP_NUM_THREADS="1")
    log = tmp_path / "server.log"
    cmd = [str(LAUNCHER), "start_server", "--app", str(APP), "--studies", str(studies),
           "--host", "127.0.0.1", "--port", str(port), "--conf", "num_inference_steps", "2"]
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
    try:
        # 1. the server comes up and lists the three synthesis models
        deadline, info = time.time() + STARTUP_TIMEOUT_S, None
        while time.time() < deadline and proc.poll() is None:
            try:
                r = requests.get(f"{base}/info/", timeout=5)
                if r.status_code == 200:
                    info = r.json()
                    break
            except requests.RequestException:
                pass
            time.sleep(1)
        assert info is not None, f"server did not answer /info/ (exit code {proc.poll()}):\n{_log_tail(log)}"
        assert {"cmrdiff_lge", "cmrdiff_t2", "cmrdiff_bssfp"} <= set(info["models"]), info["models"].keys()
        assert info["models"]["cmrdiff_lge"]["config"]["num_inference_steps"] == 2  # --conf default applied

        # 2. LGE from the C0 image id: T2 is found next to it by MyoPS name; the reply is the NIfTI itself
        t0 = time.time()
        r = requests.post(f"{base}/infer/cmrdiff_lge", params={"image": f"{case}_C0", "output": "image"},
                          timeout=300)
        assert r.status_code == 200, f"{r.status_code} {r.text[:500]}\n{_log_tail(log)}"
        out = tmp_path / "synth.nii.gz"
        out.write_bytes(r.content)
        img = nib.load(str(out))
        assert img.shape == ref.shape
        np.testing.assert_allclose(img.affine, ref.affine, atol=1e-5)
        vol = np.asarray(img.dataobj, dtype=np.float32)
        assert np.isfinite(vol).all() and vol.max() > 0
        assert f"{case}_DE_synth" in r.headers.get("content-disposition", "")
        elapsed = time.time() - t0

        # 3. explicit condition paths and knobs in `params`, JSON reply
        r = requests.post(f"{base}/infer/cmrdiff_lge", params={"image": f"{case}_T2", "output": "json"},
                          data={"params": json.dumps({"C0": str(studies / f"{case}_C0.nii.gz"),
                                                      "num_inference_steps": 2, "seed": 1})}, timeout=300)
        assert r.status_code == 200, f"{r.status_code} {r.text[:500]}"
        res = r.json()
        assert res["target"] == "DE" and res["params"]["seed"] == 1
        assert res["conditions"]["C0"].endswith(f"{case}_C0.nii.gz")

        # 4. a task whose condition is missing is a clear 400 naming the file, not a 500
        r = requests.post(f"{base}/infer/cmrdiff_t2", params={"image": f"{case}_C0", "output": "image"}, timeout=60)
        assert r.status_code == 400, f"{r.status_code} {r.text[:500]}"
        assert f"{case}_DE.nii.gz" in r.json()["detail"]
        assert proc.poll() is None, "server died"
        assert elapsed < 120, f"one 2-step synthesis took {elapsed:.0f} s"

        # 5. hostile requests: each a 4xx with a one-line reason, nothing executed, nothing written outside the
        # server's own output, then a good request still answered
        marker = tmp_path / "PWNED"
        outside = data / "test20" / f"{case}_T2.nii.gz"  # an existing NIfTI outside the studies folder
        before = _tree(tmp_path)
        hostile = [
            ("injection case_name", {"image": f"{case}_C0"},
             {"case_name": f"$__import__('pathlib').Path({str(marker)!r}).touch() or 'x'"}, 400, "case_name must be"),
            ("traversal case_name", {"image": f"{case}_C0"}, {"case_name": "../../escape"}, 400, "case_name must be"),
            ("absolute image outside", {"image": str(outside)}, {}, 403, "only files inside the studies folder"),
            ("'..' image path", {"image": str(studies / ".." / "data" / "test20" / f"{case}_C0.nii.gz")}, {}, 403,
             "'..' is not allowed"),
            ("image in params", {"image": f"{case}_C0"}, {"image": str(outside)}, 403, "only files inside"),
            ("condition outside", {"image": f"{case}_C0"}, {"T2": str(outside)}, 403, "only files inside"),
            ("injection in a condition", {"image": f"{case}_C0"},
             {"T2": f"$__import__('pathlib').Path({str(marker)!r}).touch()"}, 400, "not found in the studies folder"),
            ("knob of the wrong type", {"image": f"{case}_C0"}, {"num_inference_steps": "abc"}, 400,
             "num_inference_steps must be an integer"),
            ("knob as an expression", {"image": f"{case}_C0"}, {"estimator": "$print('x') or 'sample'"}, 400,
             "estimator must be one of"),
        ]
        for name, query, params, status, text in hostile:
            r = requests.post(f"{base}/infer/cmrdiff_lge", params=dict(query, output="json"),
                              data={"params": json.dumps(params)}, timeout=60)
            assert r.status_code == status, f"{name}: {r.status_code} {r.text[:300]}"
            detail = r.json()["detail"]
            assert text in detail and "\n" not in detail, f"{name}: {detail}"
            assert proc.poll() is None, f"server died after {name}"
        assert not marker.exists(), "a request value was executed"
        assert _tree(tmp_path) == before, "files appeared or changed outside the server's output"
        r = requests.post(f"{base}/infer/cmrdiff_lge", params={"image": f"{case}_C0", "output": "json"},
                          data={"params": json.dumps({"case_name": "patient-1.a", "num_inference_steps": 2})},
                          timeout=300)
        assert r.status_code == 200, f"{r.status_code} {r.text[:500]}"
        assert r.json()["case"] == "patient-1.a" and r.json()["conditions"] == {"C0": f"{case}_C0.nii.gz",
                                                                                "T2": f"{case}_T2.nii.gz"}
    finally:
        _stop(proc)
    assert proc.poll() is not None, "server still running after the test"


def _load_bench():
    """bench/monailabel_load.py (the load test) as a module: the test below is its smaller run."""
    sys.path.insert(0, str(ROOT / "bench"))
    try:
        import monailabel_load
    finally:
        sys.path.remove(str(ROOT / "bench"))
    return monailabel_load


@pytest.mark.skipif(not LAUNCHER.is_file() and not REQUIRED, reason=f"no `monailabel` launcher next to {sys.executable}")
def test_server_under_load_keeps_networks_and_answers_bad_requests(tmp_path):
    """4 concurrent + 6 sequential requests (2 steps) on a real server: every response a correct NIfTI, default-knob
    responses identical (no knob leaks from the requests with their own seed), the networks built once (a server that
    rebuilt them per request fails the /info/ counter and the log-line count), stable RSS, then the bad requests
    (unknown image id / model, missing sequence, bad knobs) each a 4xx naming what is wrong, and a 200 after them."""
    load = _load_bench()
    res = load.run(concurrent=4, sequential=6, steps=2, rss_tolerance_mib=64.0, max_seconds=600, workdir=tmp_path)
    assert res["networks_built"] == {"cmrdiff_lge": 1, "cmrdiff_t2": 0}
    assert res["build_log_lines"] == 1
    assert res["requests_counted"]["ok"] == 2 + 4 + 6 + 1 and res["requests_counted"]["failed"] == 0
    bad = {b["name"]: b for b in res["bad"]}
    assert bad["unknown image id"]["status"] == 404
    assert "image id 'no_such_case_C0' not found in the datastore" in bad["unknown image id"]["detail"]
    assert bad["missing sequence (task t2 needs DE)"]["status"] == 400
    for name in ("num_inference_steps 0", 'num_inference_steps "abc"', "strength 1.5", "guidance_scale_1 -1",
                 "num_samples 0"):
        assert bad[name]["status"] == 400 and "must be" in bad[name]["detail"], bad[name]
    assert res["rss_growth_mib"] <= 64.0
    assert all(p["rpm"] > 0 for p in res["phases"])


def test_knobs_are_validated_and_fresh_per_request():
    """Knob checks of the infer task without a server: each bad value a RequestError naming the knob and its range;
    a request without a knob gets the default, whatever an earlier request set."""
    sys.path.insert(0, str(APP))
    try:
        from lib.infer_synthesis import RequestError, SynthesisInferTask
    finally:
        sys.path.remove(str(APP))
    task = SynthesisInferTask(ROOT, "lge", {"num_inference_steps": "3"})
    assert task.knobs({"seed": 7, "num_samples": 2})["seed"] == 7
    k = task.knobs({})
    assert k["seed"] == 0 and k["num_inference_steps"] == 3 and k["num_samples"] == task._config["num_samples"]
    assert task.knobs({"seed": None})["seed"] is None  # null seed: allowed (not reproducible)
    assert task.knobs({"views": 2})["views"] == 2 and task.knobs({})["views"] == task._config["views"]
    assert task.knobs({"estimator": "x0"})["estimator"] == "x0" and task.knobs({})["estimator"] == "sample"
    for bad, text in [({"num_inference_steps": 0}, "num_inference_steps must be an integer in [1, 1000]"),
                      ({"num_inference_steps": "abc"}, "num_inference_steps must be an integer in [1, 1000]"),
                      ({"num_inference_steps": 2.5}, "num_inference_steps must be"),
                      ({"num_inference_steps": True}, "num_inference_steps must be"),
                      ({"strength": 1.5}, "strength must be a number in (0.0, 1.0]"),
                      ({"strength": 0}, "strength must be"),
                      ({"guidance_scale_1": -1}, "guidance_scale_1 must be a number in [0.0, 100.0]"),
                      ({"guidance_scale_2": "nan"}, "guidance_scale_2 must be"),
                      ({"num_samples": 0}, "num_samples must be an integer in [1, 16]"),
                      ({"seed": -1}, "seed must be an integer in [0, 4294967295]"),
                      ({"cache_interval": 0}, "cache_interval must be"),
                      ({"views": 3}, "views must be"),
                      ({"views": 16}, "views must be"),
                      ({"estimator": "mean"}, "estimator must be one of sample, x0"),
                      ({"guide": "DE"}, "guide must be"),
                      ({"guide": "C0"}, "residual true needs guide 'regression'"),
                      ({"residual": "maybe"}, "residual must be true or false")]:
        with pytest.raises(RequestError, match=re.escape(text)):
            task.knobs(bad)
    assert task.knobs({"guide": "C0", "residual": False})["guide"] == "C0"
    with pytest.raises(RequestError, match="num_inference_steps must be"):
        SynthesisInferTask(ROOT, "lge", {"num_inference_steps": "0"})  # a bad --conf default fails at start
