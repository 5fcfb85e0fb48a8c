"""Model-zoo style checks of the bundle itself: required files, metadata (schema, versions, changelog),
every config ``_target_`` resolvable, network input/output verification and a TorchScript export."""

from __future__ import annotations

import json
import re
from pathlib import Path

import jsonschema
import pytest
import torch
import yaml
from monai.bundle import ConfigParser, verify_net_in_out
from monai.utils import optional_import

ROOT = Path(__file__).resolve().parents[1]
SCHEMA_URL = "https://github.com/Project-MONAI/MONAI-extra-test-data/releases/download/0.8.1/meta_schema_20240725.json"


def meta() -> dict:
    return json.loads((ROOT / "configs/metadata.json").read_text())


def test_required_files_and_metadata_link():
    for f in ["configs/metadata.json", "LICENSE", "configs/inference.yaml", "configs/common.yaml",
              "configs/logging.conf", "docs/README.md", "docs/data_license.txt", "large_files.yml", "README.md"]:
        assert (ROOT / f).is_file(), f
    link = ROOT / "metadata.json"
    assert link.is_symlink() and link.resolve() == (ROOT / "configs/metadata.json").resolve()
    assert "Apache License" in (ROOT / "LICENSE").read_text()[:200]


def test_metadata_validates_against_schema_and_matches_requirements():
    m = meta()
    assert m["schema"] == SCHEMA_URL
    jsonschema.validate(m, json.loads((ROOT / "tests/data/meta_schema_20240725.json").read_text()))
    assert m["version"] in m["changelog"]
    import bundle

    assert bundle.__version__ == m["version"]
    pins = dict(re.findall(r"^([A-Za-z0-9_.-]+)==(\S+)", (ROOT / "requirements.txt").read_text(), re.M))
    assert pins["monai"] == m["monai_version"] and pins["torch"] == m["pytorch_version"]
    assert pins["numpy"] == m["numpy_version"]
    for name, version in m["required_packages_version"].items():
        assert pins[name] == version, name
    assert m["data_type"] == "nibabel" and "autoencoder_data_format" in m


def _targets(node):
    if isinstance(node, dict):
        if "_target_" in node:
            yield node["_target_"]
        for v in node.values():
            yield from _targets(v)
    elif isinstance(node, list):
        for v in node:
            yield from _targets(v)


@pytest.mark.parametrize("config", sorted(str(p.relative_to(ROOT / "configs")) for p in (ROOT / "configs").rglob("*.yaml")))
def test_every_target_resolves_in_one_hop(config):
    from monai.bundle.config_item import ComponentLocator

    locator = ComponentLocator()
    for target in _targets(yaml.safe_load((ROOT / "configs" / config).read_text())):
        if "." in target:
            module, name = target.rsplit(".", 1)
            assert optional_import(module, name=name)[1], target
        else:
            assert locator.get_component_module_name(target), target


def test_verify_net_in_out_with_timesteps(tmp_path):
    verify_net_in_out(net_id="network_def", meta_file=str(ROOT / "configs/metadata.json"),
                      config_file=str(ROOT / "configs/common.yaml"), device="cpu",
                      extra_forward_args={"timesteps": torch.zeros(1, dtype=torch.long),
                                          "class_labels": torch.ones(1, dtype=torch.long)},
                      output_dir=str(tmp_path), bundle_root=str(ROOT))


def test_torchscript_export_of_the_diffusion_unet(tmp_path):
    """``monai.bundle ckpt_export`` traces ``net(x)`` alone; the UNet also needs timesteps, context and class
    labels, so the bundle exports it with ``torch.jit.trace`` on all four (docs/README.md)."""
    p = ConfigParser()
    p.read_config(str(ROOT / "configs/common.yaml"))
    p.update({"output_dir": str(tmp_path), "bundle_root": str(ROOT)})
    net = p.get_parsed_content("network_def").eval()
    for prm in net.parameters():  # MONAI zero-initialises output layers: randomise so the check means something
        torch.nn.init.normal_(prm, std=0.02)
    x, t = torch.randn(2, net.unet.in_channels, 32, 32), torch.tensor([10, 900])
    ctx = net.context(torch.rand(2, 3, 128, 128), torch.ones(2, 3, dtype=torch.bool))
    lab = torch.tensor([1, 2])
    with torch.no_grad():
        traced = torch.jit.trace(net.unet, (x, t, ctx, lab), check_trace=False)
        torch.jit.save(traced, tmp_path / "unet.ts")
        loaded = torch.jit.load(tmp_path / "unet.ts")
        torch.testing.assert_close(loaded(x, t, ctx, lab), net(x, t, context=ctx, class_labels=lab))


def test_large_files_lists_every_shipped_weight_with_its_md5():
    import hashlib

    listed = {e["path"]: e for e in yaml.safe_load((ROOT / "large_files.yml").read_text())["large_files"]}
    shipped = {str(p.relative_to(ROOT)) for p in (ROOT / "models").glob("*.pt")}
    assert set(listed) == shipped
    for path, e in listed.items():
        assert e["hash_type"] == "md5"
        assert hashlib.md5((ROOT / path).read_bytes()).hexdigest() == e["hash_val"], path


def test_model_zoo_verify_bundle_min_mode():
    """The checks of model-zoo ``ci/verify_bundle.py --mode min``, in its order: necessary files (metadata, LICENSE),
    preferred files (``models/model.pt``, an ``inference`` config), version and changelog, metadata against the
    schema (local copy: no network here), and the large files' md5 (url empty: committed, nothing to download)."""
    import hashlib

    for f in ("configs/metadata.json", "LICENSE", "models/model.pt"):
        assert (ROOT / f).exists(), f"necessary file {f} is not existing"
    assert [p.name for p in (ROOT / "configs").glob("inference.*")] == ["inference.yaml"]
    m = meta()
    assert m["version"] in m["changelog"]
    jsonschema.validate(m, json.loads((ROOT / "tests/data/meta_schema_20240725.json").read_text()))
    for e in yaml.safe_load((ROOT / "large_files.yml").read_text())["large_files"]:
        assert e["url"] == "" and (ROOT / e["path"]).is_file(), e["path"]
        assert hashlib.md5((ROOT / e["path"]).read_bytes()).hexdigest() == e["hash_val"], e["path"]


def test_model_pt_is_the_default_inference_model_and_loads_into_network_def():
    """``models/model.pt`` (model-zoo name) is the weights file the inference workflow loads by default, and its
    ``state_dict`` loads strictly into ``network_def`` as the inference workflow resolves it."""
    from bundle.weights import diffusion_weights_path

    p = ConfigParser()
    p.read_config([str(ROOT / "configs/common.yaml"), str(ROOT / "configs/inference.yaml")])
    p.update({"bundle_root": str(ROOT), "input_files": {"C0": "unused", "T2": "unused"}})
    default = Path(p.get_parsed_content("diffusion_weights"))
    assert default.resolve() == (ROOT / "models/model.pt").resolve()
    assert (ROOT / "models/model.pt").read_bytes() == default.read_bytes()
    net = p.get_parsed_content("network_def")
    ckpt = torch.load(ROOT / "models/model.pt", weights_only=True)
    net.load_state_dict(ckpt["state_dict"], strict=True)
    assert diffusion_weights_path(ROOT / "models", "cpu", "lge") == default


def test_metadata_data_formats_are_generated_from_the_configs():
    """``network_data_format``/``autoencoder_data_format`` equal what bundle.metadata derives from common.yaml (make
    results writes them), and follow a profile change (tiny: 4 latent channels at 16x16)."""
    from bundle.metadata import data_formats

    m = meta()
    generated = data_formats()
    assert m["network_data_format"] == generated["network_data_format"]
    assert m["autoencoder_data_format"] == generated["autoencoder_data_format"]
    tiny = data_formats(profile="tiny")["network_data_format"]
    assert tiny["inputs"]["image"]["num_channels"] == 16 and tiny["inputs"]["image"]["spatial_shape"] == [16, 16]
    assert list(tiny["inputs"]["image"]["channel_def"]) == ["0-3", "4-7", "8-11", "12-15"]
