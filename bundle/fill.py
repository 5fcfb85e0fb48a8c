"""The whole-field fill, an inference step: the model synthesizes its field of view (FOV); outside it the whole input
field is filled by the guide regressor (or, without one, the synthesis in sliding FOV windows; for a reconstruction,
the input itself), blended with the FOV synthesis over a linear ramp at the FOV border. :class:`FillFieldd` runs it
in the evaluator's post-processing before ``bundle.io.SaveSynthesisd``, which then only maps the result onto the
input's grid and writes it."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from monai.config import KeysCollection
from monai.transforms import MapTransform

from bundle.data import SEQUENCES, DataError
from bundle.errors import number
from bundle.transforms import fov_offsets, paste_fov


def feather_weight(fov: int, field_shape: Sequence[int], feather: int) -> np.ndarray:
    """Blend weight (X', Y') of the FOV synthesis pasted into the field: 1 inside the FOV, falling linearly to 0
    over its outer ``feather`` voxels (only on sides where the field extends beyond the FOV), 0 outside."""
    ox, oy = fov_offsets(field_shape, fov)
    ramp = []
    for n, o in ((field_shape[0], ox), (field_shape[1], oy)):
        r = np.ones(fov, np.float32)
        if feather > 0 and o > 0:  # the field extends beyond the FOV on this axis
            k = np.minimum(np.arange(fov) + 1, np.arange(fov)[::-1] + 1) / float(feather)
            r = np.clip(k, 0, 1).astype(np.float32)
        ramp.append(r)
    slab = (ramp[0][:, None] * ramp[1][None, :])[..., None]
    return paste_fov(slab, (*field_shape[:2], 1))[..., 0]


def blend_into_field(fov_vol: np.ndarray, fill: np.ndarray, feather: int) -> np.ndarray:
    """The FOV synthesis ``fov_vol`` (fov, fov, S) pasted into the centre of ``fill`` (X', Y', S), blended over the
    outer ``feather`` voxels of the FOV (:func:`feather_weight`): (X', Y', S)."""
    w = feather_weight(fov_vol.shape[0], fill.shape, feather)[..., None]
    return w * paste_fov(fov_vol, fill.shape) + (1 - w) * fill


def sliding_fill(field: torch.Tensor, inferer, network, fov: int, overlap: float = 0.25) -> torch.Tensor:
    """The synthesis ``inferer(volumes (B, 3, fov, fov, S), network)`` over the whole ``field`` (3, X', Y', S) with
    a MONAI ``SlidingWindowInferer`` (fov x fov windows, ``overlap``, gaussian blending): (X', Y', S)."""
    from monai.inferers import SlidingWindowInferer

    x = torch.as_tensor(field).float().permute(3, 0, 1, 2)  # (S, 3, X', Y')
    sw = SlidingWindowInferer(roi_size=(fov, fov), sw_batch_size=4, overlap=overlap, mode="gaussian",
                              padding_mode="constant")

    def predictor(w: torch.Tensor) -> torch.Tensor:  # (n, 3, fov, fov) windows -> (n, 1, fov, fov)
        return inferer(w.permute(1, 2, 3, 0)[None], network)[0].permute(3, 0, 1, 2)

    with torch.inference_mode():
        out = sw(x, predictor)
    return out[:, 0].permute(1, 2, 0).clamp(0, 1).float().cpu()


class FillFieldd(MapTransform):
    """Evaluator post-processing, before ``bundle.io.SaveSynthesisd``: the whole field around the model's FOV.

    For each of ``keys`` in the item (default ``pred``, and ``mean`` / ``sample``, the sampler's outputs beside it
    that ``bundle.sampler.SynthesisOutputs`` put into the engine output), the FOV synthesis (C, fov, fov, S; channel
    ``pred_channel`` of ``pred``, 0 of the others) is pasted into ``fill`` (X', Y', S) and blended over a
    ``feather``-voxel linear ramp at the FOV border: ``<key>_field`` (X', Y', S) float32 on the processing grid of
    ``field`` (3, X', Y', S: the whole reoriented, resampled and normalised input field). ``fill`` is, for a
    reconstruction (``target`` among ``conditions``) the input, else the image-space regressor on the whole field
    (``fill_network``, default: the inferer's ``guide_network``, the regressor of ``guide: regression``; at the
    model's pixel scale ``image_size``, default the inferer's), else the inferer itself in sliding fov x fov windows
    (``network`` needed). Every output of an item gets the same fill. ``field_fill`` records ``{"method",
    "feather_voxels"}`` for the sidecar. Items without ``field`` are returned unchanged."""

    def __init__(self, target: str, conditions: Sequence[str], inferer=None,
                 keys: KeysCollection = ("pred", "mean", "sample"), pred_channel: int = 0, fill_network=None,
                 network=None, feather: int = 16, image_size: int | None = None) -> None:
        super().__init__(keys, allow_missing_keys=True)
        self.target, self.conditions, self.inferer = target, list(conditions), inferer
        self.pred_channel, self.fill_network, self.network = int(pred_channel), fill_network, network
        self.feather = int(number(feather, "fill_feather", int, 0))
        self.image_size = image_size if image_size is not None else getattr(inferer, "image_size", None)

    def fill(self, field: torch.Tensor, fov: int) -> tuple[np.ndarray, str]:
        """(X', Y', S) synthesis of the whole field around the model's ``fov``, and the method's name."""
        t = SEQUENCES.index(self.target)
        if self.target in self.conditions:
            return np.asarray(field[t], np.float32), "input"
        net = self.fill_network if self.fill_network is not None else getattr(self.inferer, "guide_network", None)
        if net is not None:
            # imported here, not at module level: bundle.regression pulls in the training stack (and weights)
            from bundle.regression import regression_fill

            return regression_fill(field, t, net, fov, self.image_size).numpy(), "regression"
        if self.network is not None and self.inferer is not None:
            return sliding_fill(field, self.inferer, self.network, fov).numpy(), "sliding_window"
        raise DataError("whole-field synthesis needs a fill_network, the inferer's guide_network or the network "
                        "(for sliding windows); none was given to FillFieldd")

    def __call__(self, data) -> dict:
        d = dict(data)
        if d.get("field") is None:
            return d
        vols = {k: torch.as_tensor(d[k]).detach().float().cpu().numpy()[self.pred_channel if k == "pred" else 0]
                for k in self.key_iterator(d) if d[k] is not None}
        if not vols:
            return d
        field = torch.as_tensor(d["field"]).detach().float().cpu()
        fov = next(iter(vols.values())).shape[0]
        fill, method = self.fill(field, fov)
        for k, v in vols.items():
            d[f"{k}_field"] = blend_into_field(v, fill, self.feather)
        d["field_fill"] = {"method": method, "feather_voxels": self.feather}
        return d
