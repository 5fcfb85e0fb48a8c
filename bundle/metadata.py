"""The parts of ``configs/metadata.json`` that follow from the configs: the networks' input/output formats
(channel counts, channel definitions, spatial shapes) of the default profile. ``make results`` writes them with
``eval_metrics``; a test checks that the committed file matches, so they are never typed by hand."""

from __future__ import annotations

from pathlib import Path

from monai.bundle import ConfigParser

ROOT = Path(__file__).resolve().parents[1]


def _field(kind: str, fmt: str, channels: int, shape: list[int], channel_def: dict, **extra) -> dict:
    return {"type": kind, "format": fmt, **extra, "num_channels": channels, "spatial_shape": shape,
            "dtype": "float32", "value_range": [0, 1] if kind == "image" else [], "is_patch_data": False,
            "channel_def": channel_def}


def data_formats(config: str | Path = ROOT / "configs" / "common.yaml", profile: str | None = None) -> dict:
    """``{"network_data_format": ..., "autoencoder_data_format": ...}`` for ``profile`` (default: the config's).

    Diffusion UNet input (B, 4·lc, h, w): the noisy target latent and the C0, DE, T2 condition latents, lc = the
    autoencoder's latent channels, h = w = image_size / 2^(levels − 1); output (B, lc, h, w)."""
    p = ConfigParser()
    p.read_config(str(config))
    if profile is not None:
        p["profile"] = profile
    prof = p["profile"]
    spec = p["profiles"][prof]
    lc, size = spec["autoencoder"]["latent_channels"], spec["image_size"]
    latent = [size // 2 ** (len(spec["autoencoder"]["channels"]) - 1)] * 2
    target = {"epsilon": "predicted noise (epsilon)", "v_prediction": "predicted velocity (v)",
              "sample": "predicted clean latent", "flow": "predicted rectified-flow velocity (x0 - noise)"}[p["prediction_type"]]
    ranges = [f"{i * lc}-{(i + 1) * lc - 1}" for i in range(4)]
    image_def = {
        ranges[0]: "noisy target latent",
        ranges[1]: "C0 (bSSFP) latent x scale factor",
        ranges[2]: "DE (LGE) latent x scale factor",
        ranges[3]: "T2 latent x scale factor (the target's slot and dropped conditions are zero); cross-attention "
                   "context: condition-encoder tokens (network_def.context)",
    }
    fov = p["fov"]
    down = fov // size
    return {
        "network_data_format": {
            "inputs": {
                "image": _field("noise", "latent", 4 * lc, latent, image_def),
                "timesteps": {"type": "timesteps", "format": "timesteps", "num_channels": 1, "spatial_shape": [],
                              "dtype": "long", "value_range": [0, p["num_train_timesteps"] - 1]},
                "class_labels": {"type": "class", "format": "index", "num_channels": 1, "spatial_shape": [],
                                 "dtype": "long", "value_range": [0, 2],
                                 "channel_def": {"0": "target sequence: 0 C0 (bSSFP), 1 DE (LGE), 2 T2"}},
            },
            "outputs": {"pred": _field("noise", "latent", lc, latent, {ranges[0]: f"{target} of the target latent"})},
        },
        "autoencoder_data_format": {
            "inputs": {"image": _field("image", "magnitude", 1, [size, size], {
                "0": f"one sequence (C0, DE or T2), {fov}x{fov} field of view downsampled x{down} ({prof} profile)"},
                modality="MR")},
            "outputs": {"pred": _field("image", "magnitude", 1, [size, size], {"0": "reconstruction"}, modality="MR")},
        },
    }
