"""Bounded load test of the MONAI Label sample app (monailabel_app/) on loopback: a real `monailabel start_server`
with the shipped weights (models/), phantom cases as studies and a cheap sampler setting (--conf), then N concurrent
and M sequential synthesis requests, every response checked, the server's memory sampled, then bad requests.

    make monailabel
    OMP_NUM_THREADS=1 PYTHONPATH=. .venv-monailabel/bin/python bench/monailabel_load.py \\
        [--concurrent 8] [--sequential 50] [--steps 5] [--out bench/results.md]

Every response must be HTTP 200 with a NIfTI of the input's shape and affine, finite and non-constant; every request
without its own knobs must return exactly the volume of the first request of its case (the same default seed: a knob
of an earlier request must not leak into a later one), while every 5th sequential request sets its own
``seed``/``num_samples``. Memory = RSS summed over the server's process tree (psutil, sampled every 0.1 s): its peak,
after the first request (networks built) and at the end; "stable" = end - after-first <= the tolerance
(--rss_tolerance_mib). Then bad requests (unknown image id, unknown model, missing condition sequence, out-of-range
or wrong-type knobs) must each get their 4xx with a message naming the id / file / knob, and a good request after
them a 200. The networks must have been built once (``networks_built`` in /info/, the app's log line).
The server is always stopped (finally); every loop is bounded in count and time (--max_seconds). Exit code 1 on any
failed check. With --out, the results replace the section between the markers below in that file (appended if
absent). The functions here are reused by tests/test_monailabel.py (a smaller run).
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import nibabel as nib
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
APP = ROOT / "monailabel_app"
BEGIN, END = "<!-- monailabel_load:begin -->", "<!-- monailabel_load:end -->"
BUILD_LINE = "networks built and weights loaded"  # the app's log line, once per model build
STARTUP_TIMEOUT_S = 180
REQUEST_TIMEOUT_S = 300


class CheckFailed(AssertionError):
    pass


def check(cond: bool, msg: str) -> None:
    if not cond:
        raise CheckFailed(msg)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_studies(folder: Path, case_ids=(201, 202)) -> list[str]:
    """Phantom cases with C0 and T2 only (the conditions of task lge; DE deliberately absent) in ``folder``."""
    from bundle.phantom import make_phantom_dataset

    data = make_phantom_dataset(folder.parent / (folder.name + "_phantom"), train_ids=(), validation_ids=(),
                                test_ids=tuple(case_ids))
    folder.mkdir(parents=True, exist_ok=True)
    cases = [f"myops_test_{i}" for i in case_ids]
    for case in cases:
        for seq in ("C0", "T2"):
            shutil.copy(data / "test20" / f"{case}_{seq}.nii.gz", folder)
    return cases


class Server:
    """`monailabel start_server` on 127.0.0.1 in its own session (so the whole process tree can be stopped)."""

    def __init__(self, studies: Path, workdir: Path, conf: dict, python_bin: Path | None = None):
        self.bin = Path(python_bin or Path(sys.executable).parent)  # the venv's bin: the launcher runs `python`
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log = workdir / "server.log"
        cmd = [str(self.bin / "monailabel"), "start_server", "--app", str(APP), "--studies", str(studies),
               "--host", "127.0.0.1", "--port", str(self.port)]
        for k, v in conf.items():
            cmd += ["--conf", str(k), str(v)]
        self.cmd = cmd
        env = dict(os.environ, PATH=f"{self.bin}{os.pathsep}{os.environ.get('PATH', '')}",
                   OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"))
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen(cmd, cwd=workdir, env=env, stdout=out, stderr=subprocess.STDOUT,
                                         start_new_session=True)

    def wait_ready(self, timeout_s: float = STARTUP_TIMEOUT_S) -> dict:
        import requests

        deadline = time.time() + timeout_s
        while time.time() < deadline and self.proc.poll() is None:
            try:
                r = requests.get(f"{self.base}/info/", timeout=5)
                if r.status_code == 200:
                    return r.json()
            except requests.RequestException:
                pass
            time.sleep(1)
        raise CheckFailed(f"server did not answer /info/ within {timeout_s} s (exit code {self.proc.poll()}):\n"
                          f"{self.log_tail()}")

    def info(self) -> dict:
        import requests

        r = requests.get(f"{self.base}/info/", timeout=60)
        check(r.status_code == 200, f"/info/ answered {r.status_code}")
        return r.json()

    def alive(self) -> bool:
        return self.proc.poll() is None

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def log_tail(self, n: int = 4000) -> str:
        return self.log_text()[-n:] or "(no server log)"

    def rss(self) -> int:
        """Bytes of RSS summed over the server's process tree (the launcher script and its python)."""
        import psutil

        try:
            root = psutil.Process(self.proc.pid)
            procs = [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return 0
        total = 0
        for p in procs:
            try:
                total += p.memory_info().rss
            except psutil.NoSuchProcess:
                pass
        return total

    def stop(self) -> None:
        """SIGTERM to the process group, SIGKILL if it lingers; bounded."""
        if self.proc.poll() is not None:
            return
        for sig, wait_s in ((signal.SIGTERM, 15), (signal.SIGKILL, 10)):
            try:
                os.killpg(self.proc.pid, sig)
            except ProcessLookupError:
                return
            try:
                self.proc.wait(timeout=wait_s)
                return
            except subprocess.TimeoutExpired:
                continue


class RssSampler(threading.Thread):
    """Samples ``server.rss()`` every ``interval_s`` until stopped; keeps the peak."""

    def __init__(self, server: Server, interval_s: float = 0.1):
        super().__init__(daemon=True)
        self.server, self.interval_s = server, interval_s
        self.peak, self.samples = 0, 0
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.is_set():
            self.peak = max(self.peak, self.server.rss())
            self.samples += 1
            self._stop_event.wait(self.interval_s)

    def stop(self) -> None:
        self._stop_event.set()
        if self.ident is not None:  # started
            self.join(timeout=5)


def load_nifti_bytes(content: bytes) -> nib.Nifti1Image:
    raw = gzip.decompress(content) if content[:2] == b"\x1f\x8b" else content
    return nib.Nifti1Image.from_bytes(raw)


def infer(base: str, model: str, image: str, params: dict | None = None, output: str = "image"):
    import requests

    data = {"params": json.dumps(params)} if params else None
    return requests.post(f"{base}/infer/{model}", params={"image": image, "output": output}, data=data,
                         timeout=REQUEST_TIMEOUT_S)


def check_volume(r, ref: nib.Nifti1Image, what: str) -> np.ndarray:
    """The response is a 200 with a NIfTI on ``ref``'s grid, finite and non-constant; returns its data."""
    check(r.status_code == 200, f"{what}: HTTP {r.status_code} {r.text[:300]}")
    img = load_nifti_bytes(r.content)
    check(img.shape == ref.shape, f"{what}: shape {img.shape} != input {ref.shape}")
    check(np.allclose(img.affine, ref.affine, atol=1e-5), f"{what}: affine differs from the input's")
    vol = np.asarray(img.dataobj, dtype=np.float32)
    check(bool(np.isfinite(vol).all()), f"{what}: non-finite voxels")
    check(float(vol.std()) > 0, f"{what}: constant volume")
    return vol


def bad_requests(base: str, case: str) -> list[dict]:
    """(name, request, expected status, text the message must contain) for the bad requests; run each, check it,
    return the rows (status, detail)."""
    m = "cmrdiff_lge"
    cases = [
        ("unknown image id", m, "no_such_case_C0", None, 404, "image id 'no_such_case_C0' not found in the datastore"),
        ("unknown model", "cmrdiff_nope", f"{case}_C0", None, 404, "model 'cmrdiff_nope' not found"),
        ("missing sequence (task t2 needs DE)", "cmrdiff_t2", f"{case}_C0", None, 400, f"{case}_DE.nii.gz"),
        ("num_inference_steps 0", m, f"{case}_C0", {"num_inference_steps": 0}, 400, "num_inference_steps must be"),
        ('num_inference_steps "abc"', m, f"{case}_C0", {"num_inference_steps": "abc"}, 400,
         "num_inference_steps must be"),
        ("strength 1.5", m, f"{case}_C0", {"strength": 1.5}, 400, "strength must be a number in (0.0, 1.0]"),
        ("guidance_scale_1 -1", m, f"{case}_C0", {"guidance_scale_1": -1}, 400, "guidance_scale_1 must be"),
        ("num_samples 0", m, f"{case}_C0", {"num_samples": 0}, 400, "num_samples must be an integer in [1, 16]"),
    ]
    rows = []
    for name, model, image, params, status, text in cases:
        t0 = time.time()
        r = infer(base, model, image, params)
        try:
            detail = r.json().get("detail", r.text)
        except ValueError:
            detail = r.text
        check(r.status_code == status, f"bad request {name!r}: HTTP {r.status_code} (expected {status}): {r.text[:300]}")
        check(text in str(detail), f"bad request {name!r}: message {detail!r} lacks {text!r}")
        rows.append({"name": name, "status": r.status_code, "detail": str(detail), "s": round(time.time() - t0, 3)})
    return rows


def run(concurrent: int = 8, sequential: int = 50, steps: int = 5, rss_tolerance_mib: float = 64.0,
        max_seconds: float = 1800.0, workdir: Path | None = None, log=print) -> dict:
    """The whole load test; returns the results (raises CheckFailed on the first failed check)."""
    t_start = time.time()
    deadline = t_start + max_seconds
    own_tmp = workdir is None
    workdir = Path(workdir or tempfile.mkdtemp(prefix="cmrdiff_mlload_"))
    studies = workdir / "studies"
    cases = make_studies(studies)
    refs = {c: nib.load(str(studies / f"{c}_C0.nii.gz")) for c in cases}
    conf = {"num_inference_steps": steps, "num_samples": 1, "models": "lge,t2"}
    server = Server(studies, workdir, conf)
    sampler = RssSampler(server)
    res: dict = {"concurrent": concurrent, "sequential": sequential, "steps": steps, "conf": conf,
                 "rss_tolerance_mib": rss_tolerance_mib, "server_cmd": " ".join(server.cmd)}
    try:
        info = server.wait_ready()
        check(info["models"]["cmrdiff_lge"]["config"]["num_inference_steps"] == steps, "--conf default not applied")
        check(info["models"]["cmrdiff_lge"].get("networks_built") == 0, "networks built before the first request")
        res["rss_idle_mib"] = server.rss() / 2**20
        sampler.start()
        model = "cmrdiff_lge"
        reference: dict[str, np.ndarray] = {}

        # first request per case (networks built on the first): the reference volume of the default knobs
        t0 = time.time()
        for c in cases:
            reference[c] = check_volume(infer(server.base, model, f"{c}_C0"), refs[c], f"first request {c}")
        res["first_requests_s"] = round(time.time() - t0, 2)
        res["rss_after_first_mib"] = server.rss() / 2**20

        def one(i: int, params: dict | None = None) -> float:
            c = cases[i % len(cases)]
            t = time.time()
            r = infer(server.base, model, f"{c}_C0", params)
            vol = check_volume(r, refs[c], f"request {i} ({c}, params {params})")
            if not params:  # default knobs: exactly the first request's volume (no knob leaked into it)
                check(np.array_equal(vol, reference[c]), f"request {i} ({c}): differs from the default-knob "
                                                         "reference (a knob of an earlier request leaked?)")
            return time.time() - t

        # phase 1: N concurrent requests (MONAI Label queues them: its /infer endpoint runs infer synchronously)
        t0 = time.time()
        with ThreadPoolExecutor(max_workers=concurrent) as ex:
            lat_c = list(ex.map(one, range(concurrent), timeout=max(1.0, deadline - time.time())))
        wall_c = time.time() - t0
        res["rss_after_concurrent_mib"] = server.rss() / 2**20
        check(server.alive(), "server died during the concurrent phase")

        # phase 2: M sequential requests; every 5th sets its own seed and num_samples (must not leak onward)
        lat_s, own_knobs, rss_series = [], 0, []
        res["rss_series_mib"] = rss_series
        t0 = time.time()
        for i in range(sequential):
            check(time.time() < deadline, f"--max_seconds {max_seconds} exceeded at sequential request {i}")
            params = {"seed": 1000 + i, "num_samples": 2} if i % 5 == 4 else None
            own_knobs += params is not None
            lat_s.append(one(i, params))
            rss_series.append(round(server.rss() / 2**20, 1))
        wall_s = time.time() - t0
        res["rss_end_mib"] = server.rss() / 2**20
        check(server.alive(), "server died during the sequential phase")

        # bad requests: each its 4xx, then a good request is still served
        res["bad"] = bad_requests(server.base, cases[0])
        check(server.alive(), "server died after the bad requests")
        one(0)
        sampler.stop()
        info = server.info()
        built = {m: info["models"][m].get("networks_built") for m in info["models"]}
        res["networks_built"] = built
        res["build_log_lines"] = server.log_text().count(BUILD_LINE)
        res["requests_counted"] = info["models"][model].get("requests")
        check(built.get(model) == 1, f"{model}: networks built {built.get(model)} times (expected once)")
        check(res["build_log_lines"] == 1, f"'{BUILD_LINE}' logged {res['build_log_lines']} times (expected once)")
        res.update(
            phases=[
                {"phase": f"{concurrent} concurrent", "n": concurrent, "wall_s": wall_c,
                 "rpm": 60 * concurrent / wall_c, "median_s": statistics.median(lat_c), "max_s": max(lat_c)},
                {"phase": f"{sequential} sequential ({own_knobs} with own seed, num_samples 2)", "n": sequential,
                 "wall_s": wall_s, "rpm": 60 * sequential / wall_s, "median_s": statistics.median(lat_s),
                 "max_s": max(lat_s)},
            ],
            rss_peak_mib=sampler.peak / 2**20,
            rss_samples=sampler.samples,
            total_s=round(time.time() - t_start, 1),
        )
        res["rss_growth_mib"] = res["rss_end_mib"] - res["rss_after_first_mib"]
        check(res["rss_growth_mib"] <= rss_tolerance_mib,
              f"RSS grew {res['rss_growth_mib']:.0f} MiB from the first request to the end "
              f"(tolerance {rss_tolerance_mib} MiB)")
        log(f"ok: {json.dumps({k: v for k, v in res.items() if k != 'bad'}, default=str)}")
        return res
    except BaseException:
        log(f"server log tail:\n{server.log_tail()}")
        raise
    finally:
        sampler.stop()
        server.stop()
        check(not server.alive(), "server still running after stop()")
        if own_tmp:
            shutil.rmtree(workdir, ignore_errors=True)


def markdown(res: dict, command: str) -> str:
    import torch

    c = res["phases"][0]
    lines = [
        BEGIN,
        "## MONAI Label under load",
        "",
        f"Written by `{command}` (`bench/monailabel_load.py`) on {time.strftime('%Y-%m-%d')}: "
        f"{platform.machine()}, {os.cpu_count()} CPU cores (shared with other jobs), torch {torch.__version__}, "
        f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', '(unset)')}. A real `monailabel start_server` (0.8.5) "
        f"on 127.0.0.1 with the shipped weights (models/, cpu profile), two phantom cases "
        f"(288x272x4) as studies, `--conf num_inference_steps {res['steps']} --conf num_samples 1` (other knobs: "
        "configs/inference.yaml, guide regression, cache_interval 2); task lge, `output=image`.",
        "Every response checked: HTTP 200, NIfTI of the input's shape and affine, finite, non-constant, and every "
        "default-knob response identical to its case's first one (no knob leaks between requests). "
        "MONAI Label 0.8.5 runs `/infer` synchronously in its event loop, so concurrent requests queue "
        "(one synthesis at a time)" + (
            "; as the loop is busy meanwhile, the concurrent phase's responses left together at its end (its "
            "latencies = its wall time)." if c["median_s"] > 0.8 * c["wall_s"] else "."),
        "",
        "| phase | requests | wall (s) | requests / min | median latency (s) | max latency (s) |",
        "|---|---|---|---|---|---|",
    ]
    for p in res["phases"]:
        lines.append(f"| {p['phase']} | {p['n']} | {p['wall_s']:.1f} | {p['rpm']:.0f} | {p['median_s']:.2f} "
                     f"| {p['max_s']:.2f} |")
    lines += [
        "",
        f"Memory (RSS of the server's process tree, psutil, {res['rss_samples']} samples every 0.1 s): idle after "
        f"start {res['rss_idle_mib']:.0f} MiB; after the first requests (networks built) "
        f"{res['rss_after_first_mib']:.0f} MiB; after the concurrent phase {res['rss_after_concurrent_mib']:.0f} MiB; "
        f"at the end {res['rss_end_mib']:.0f} MiB (growth {res['rss_growth_mib']:+.0f} MiB, tolerance "
        f"{res['rss_tolerance_mib']:.0f} MiB); after each sequential request {min(res['rss_series_mib']):.0f}-"
        f"{max(res['rss_series_mib']):.0f} MiB; **peak {res['rss_peak_mib']:.0f} MiB** (during a request). "
        f"Networks built: {res['networks_built']} (`networks_built` in /info/; the build log line "
        f"{res['build_log_lines']}x); first request per case (incl. the build) {res['first_requests_s']} s in all.",
        "",
        "Bad requests afterwards (each answered, then a good request still 200):",
        "",
        "| request | HTTP | message |",
        "|---|---|---|",
    ]
    for b in res["bad"]:
        detail = b["detail"].replace("|", "\\|")
        if len(detail) > 160:
            detail = detail[:157] + "..."
        lines.append(f"| {b['name']} | {b['status']} | {detail} |")
    lines += ["", END]
    return "\n".join(lines) + "\n"


def write_section(path: Path, section: str, begin: str = BEGIN, end: str = END) -> None:
    """Replace the ``begin``..``end`` marked section of ``path`` with ``section`` (which carries the markers), or
    append it; the rest of the file is kept (also used by bench/bench_estimator.py)."""
    text = path.read_text() if path.exists() else ""
    if begin in text and end in text:
        pre, rest = text.split(begin, 1)
        post = rest.split(end, 1)[1]
        text = pre + section.rstrip("\n") + post
    else:
        text = text.rstrip("\n") + "\n\n" + section
    path.write_text(text)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--concurrent", type=int, default=8)
    ap.add_argument("--sequential", type=int, default=50)
    ap.add_argument("--steps", type=int, default=5, help="num_inference_steps (server default via --conf)")
    ap.add_argument("--rss_tolerance_mib", type=float, default=64.0)
    ap.add_argument("--max_seconds", type=float, default=1800.0, help="bound on the whole run")
    ap.add_argument("--out", type=Path, default=None, help="markdown file to write the results section into")
    args = ap.parse_args()
    try:
        res = run(args.concurrent, args.sequential, args.steps, args.rss_tolerance_mib, args.max_seconds)
    except CheckFailed as e:
        print(f"FAILED: {e}", file=sys.stderr)
        return 1
    command = ("OMP_NUM_THREADS=1 PYTHONPATH=. .venv-monailabel/bin/python bench/monailabel_load.py "
               + " ".join(sys.argv[1:])).strip()
    section = markdown(res, command)
    print(section)
    if args.out:
        write_section(args.out, section)
    return 0


if __name__ == "__main__":
    sys.exit(main())
