"""The MONAI Label app's request checks (monailabel_app/lib/validation.py) in the project's own environment (no
monailabel needed): no request value can reach MONAI's config parser as text it interprets, no path leaves the
studies folder, every bad knob is a RequestError naming it. The real-server counterpart is in test_monailabel.py."""

from __future__ import annotations

import importlib.util
import os
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("cmrdiff_ml_validation", ROOT / "monailabel_app" / "lib" / "validation.py")
V = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(V)

INJECTION = "$__import__('pathlib').Path('/tmp/PWNED').touch() or 'x'"


@pytest.fixture()
def studies(tmp_path):
    root = tmp_path / "studies"
    (root / "sub").mkdir(parents=True)
    for name in ("p1_C0.nii.gz", "p1_T2.nii.gz", "sub/p1_DE.nii.gz"):
        (root / name).write_bytes(b"x")
    (tmp_path / "outside.nii.gz").write_bytes(b"x")
    return root


@pytest.mark.parametrize("name", ["p1", "myops_test_201", "case-1.v2", "A_b.C"])
def test_safe_names_pass(name):
    assert V.check_name(name, "case_name") == name


@pytest.mark.parametrize("bad", [INJECTION, "@network", "%configs/common.yaml#seed", "../escape", "a/b", "a\\b", "..",
                                 ".", "", "x" * 129, "p 1", "p1\n", 7, None, {"$x": 1}, ["a"]])
def test_unsafe_names_are_refused(bad):
    with pytest.raises(V.RequestError, match="case_name must be 1-128 characters"):
        V.check_name(bad, "case_name")


def test_paths_stay_inside_the_studies_folder(studies, tmp_path):
    assert V.check_path("p1_C0.nii.gz", studies, "C0") == (studies / "p1_C0.nii.gz").resolve()
    assert V.check_path(str(studies / "sub" / "p1_DE.nii.gz"), studies, "DE") == (studies / "sub/p1_DE.nii.gz").resolve()
    assert V.check_path("p1_DE.nii.gz", studies, "DE", base=studies / "sub") == (studies / "sub/p1_DE.nii.gz").resolve()
    # outside: absolute, '..' (even one that resolves back inside), a symlink out of the folder
    os.symlink(tmp_path / "outside.nii.gz", studies / "link.nii.gz")
    for bad, why in [(str(tmp_path / "outside.nii.gz"), "only files inside the studies folder"),
                     ("/etc/hostname", "only files inside the studies folder"),
                     ("../outside.nii.gz", "'..' is not allowed"),
                     ("sub/../p1_C0.nii.gz", "'..' is not allowed"),
                     ("link.nii.gz", "only files inside the studies folder")]:
        with pytest.raises(V.ForbiddenPath, match=re.escape(why)) as e:
            V.check_path(bad, studies, "T2")
        assert e.value.status == 403 and "T2" in str(e.value)
    for bad in (None, 3, {"a": 1}, "", "a\x00b"):
        with pytest.raises(V.RequestError, match="T2 must be a file name or a path inside the studies folder") as e:
            V.check_path(bad, studies, "T2")
        assert e.value.status == 400


def test_raw_image_field(studies, tmp_path):
    V.check_image("p1_C0", studies)  # a datastore id
    V.check_image(str(studies / "p1_C0.nii.gz"), studies)  # a path inside the folder
    for bad, status in [(str(tmp_path / "outside.nii.gz"), 403), ("/etc/hostname", 403),
                        (str(studies / ".." / "outside.nii.gz"), 403), ("../outside", 403), (INJECTION, 403),
                        ("$__import__('os').getpid()", 400), ("@network", 400),
                        ("", 400), (None, 400), (["p1_C0"], 400)]:
        with pytest.raises(V.RequestError) as e:
            V.check_image(bad, studies)
        assert e.value.status == status, (bad, e.value)


def _defaults():
    from monai.bundle import ConfigParser

    raw = ConfigParser()
    raw.read_config([str(ROOT / "configs" / f) for f in ("common.yaml", "inference.yaml")])
    return {k: raw.get(k) for k in V.KNOBS}


def test_knobs_are_cast_validated_and_fresh_per_request():
    defaults = _defaults()
    types = V.knob_types(defaults)
    knobs = V.validate_knobs({"seed": 7, "num_samples": "2"}, defaults, types, "lge", ["C0", "T2"])
    assert knobs["seed"] == 7 and knobs["num_samples"] == 2 and isinstance(knobs["num_samples"], int)
    k = V.validate_knobs({}, defaults, types, "lge", ["C0", "T2"])
    assert k == {n: defaults[n] for n in V.KNOBS}  # nothing of the previous request
    assert V.validate_knobs({"seed": None}, defaults, types, "lge", ["C0", "T2"])["seed"] is None
    assert V.validate_knobs({"guide": "C0", "residual": False}, defaults, types, "lge", ["C0", "T2"])["guide"] == "C0"
    for bad, text in [({"num_inference_steps": 0}, "num_inference_steps must be an integer in [1, 1000]"),
                      ({"num_inference_steps": "abc"}, "num_inference_steps must be an integer in [1, 1000]"),
                      ({"num_inference_steps": 2.5}, "num_inference_steps must be"),
                      ({"num_inference_steps": True}, "num_inference_steps must be"),
                      ({"num_inference_steps": [5]}, "num_inference_steps must be"),
                      ({"num_inference_steps": INJECTION}, "num_inference_steps must be"),
                      ({"strength": 1.5}, "strength must be a number in (0.0, 1.0]"),
                      ({"strength": 0}, "strength must be"),
                      ({"strength": {"$x": 1}}, "strength must be"),
                      ({"guidance_scale_1": -1}, "guidance_scale_1 must be a number in [0.0, 100.0]"),
                      ({"guidance_scale_2": "nan"}, "guidance_scale_2 must be"),
                      ({"guidance_scale_2": "1e999"}, "guidance_scale_2 must be"),
                      ({"num_samples": 0}, "num_samples must be an integer in [1, 16]"),
                      ({"seed": -1}, "seed must be an integer in [0, 4294967295]"),
                      ({"seed": "@network"}, "seed must be"),
                      ({"cache_interval": 0}, "cache_interval must be"),
                      ({"views": 3}, "views must be"),
                      ({"estimator": "mean"}, "estimator must be one of sample, x0"),
                      ({"estimator": INJECTION}, "estimator must be one of sample, x0"),
                      ({"estimator": ["x0"]}, "estimator must be one of sample, x0"),
                      ({"guide": INJECTION}, "guide must be one of"),
                      ({"guide": {"a": 1}}, "guide must be one of"),
                      ({"guide": "DE"}, "guide must be 'regression', 'default' (null) or a condition of task lge"),
                      ({"guide": "C0"}, "residual true needs guide 'regression'"),
                      ({"residual": "maybe"}, "residual must be true or false"),
                      ({"residual": INJECTION}, "residual must be true or false")]:
        with pytest.raises(V.RequestError, match=re.escape(text)) as e:
            V.validate_knobs(bad, defaults, types, "lge", ["C0", "T2"])
        assert e.value.status == 400 and "\n" not in str(e.value) and len(str(e.value)) < 200


def test_overrides_the_parser_would_interpret_are_refused():
    ok = {"case_name": "p1", "output_dir": "/tmp/x", "input_files": {"C0": Path("/s/$p1_C0.nii.gz")}, "seed": None,
          "views": 8, "estimator": "sample"}
    V.assert_plain_data(ok)  # Path objects are data: the parser interprets strings only
    for key, bad in [("case_name", INJECTION), ("estimator", "@network"), ("x", ["a", "%configs/common.yaml#seed"])]:
        with pytest.raises(RuntimeError, match="would be interpreted by the config parser"):
            V.assert_plain_data(dict(ok, **{key: bad}))
    with pytest.raises(RuntimeError, match="input_files#T2"):
        V.assert_plain_data(dict(ok, input_files={"T2": "$1"}))


def test_a_path_object_reaches_the_workflow_as_data(tmp_path):
    """MONAI's parser leaves a Path override alone (it would evaluate the same text as a string): the handover the
    app relies on."""
    from monai.bundle import ConfigParser

    marker = tmp_path / "PWNED"
    code = f"$__import__('pathlib').Path({str(marker)!r}).touch() or 'x'"
    parser = ConfigParser({"input_files": None, "cases": "$[dict(case='c', **@input_files)]"})
    parser["input_files"] = {"C0": Path(code)}
    assert parser.get_parsed_content("cases") == [{"case": "c", "C0": Path(code)}] and not marker.exists()
    parser = ConfigParser({"input_files": None, "cases": "$[dict(case='c', **@input_files)]"})
    parser["input_files"] = {"C0": code}  # the same text as a string: evaluated (what the checks prevent)
    parser.get_parsed_content("cases")
    assert marker.exists()
