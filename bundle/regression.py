"""Image-space baselines (``configs/baselines/``): a network regresses the target sequence directly from the two
condition images, trained with L1 (``unet_l1``) or L1 + a conditional patch GAN (``pix2pix``).

The network input is (B, 6, H, W): the three sequences in the canonical order C0, DE, T2 with the target's channel
zeroed, then a one-hot of the target (3 channels), so one network serves every task (``any``) like the shipped
CMRDiff model. Slices come from ``bundle.data.build_slices``: ``image`` (B, 3, H, W) in [0, 1].
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Mapping

import torch
from monai.inferers import Inferer
from torch import nn

from bundle.data import area_resize, bicubic_resize, map_fov_slices
from bundle.engine import batch_generator, task_slots
from bundle.tta import check_views, view_mean
from bundle.weights import WeightsError, load_weights

logger = logging.getLogger(__name__)


def translation_inputs(images: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """images (B, 3, H, W), target (B,) slot index -> network input (B, 6, H, W): conditions + one-hot target."""
    onehot = nn.functional.one_hot(target.long(), 3).to(images)  # (B, 3)
    conditions = images * (1 - onehot)[:, :, None, None]
    return torch.cat([conditions, onehot[:, :, None, None].expand_as(images)], 1)


class TranslationPrepareBatch:
    """Slice batch -> ``(inputs (B', 6, H, W), target image (B', 1, H, W), (), {"condition", "real"})``.

    ``task`` names one task or ``any``: in training each slice gets a random target; with ``all_tasks`` (validation)
    every slice appears once per task (B' = n_tasks·B), so the validation metric covers all three. The kwargs feed
    :class:`ConditionalPatchInferer` (pix2pix); :class:`TranslationInferer` ignores them.
    ``seed`` makes the random targets a function of the batch's slices. With ``with_mask`` the target is the pair
    ``(image (B', 1, H, W), myocardium mask (B', 1, H, W))`` for :class:`bundle.losses.HeatmapDiffusionLoss` (zeros
    where the slices carry no ``mask``: unlabelled scans).
    """

    def __init__(self, task: str, tasks: Mapping[str, Mapping], all_tasks: bool = False, seed: int | None = None,
                 with_mask: bool = False):
        names = sorted(tasks) if task == "any" else [task]
        self.targets = torch.tensor([task_slots(t, tasks)[0] for t in names])
        self.all_tasks, self.seed, self.with_mask = all_tasks, seed, with_mask

    def __call__(self, batchdata: Mapping, device=None, non_blocking: bool = False, **kwargs):
        images = batchdata["image"].float()
        b = images.shape[0]
        if self.all_tasks:
            target = self.targets.repeat_interleave(b)
            images = images.repeat(len(self.targets), 1, 1, 1)
        else:
            g = batch_generator(batchdata, self.seed)
            target = self.targets[torch.randint(len(self.targets), (b,), generator=g)]
        inputs = translation_inputs(images, target).to(device=device, non_blocking=non_blocking)
        real = images[torch.arange(len(target)), target][:, None].to(device=device, non_blocking=non_blocking)
        goal = real
        if self.with_mask:
            mask = batchdata.get("mask")
            mask = torch.zeros_like(images[:b, :1]) if mask is None else mask.float()
            mask = mask.repeat(len(target) // b, 1, 1, 1).to(device=device, non_blocking=non_blocking)
            goal = (real, mask)
        return inputs, goal, (), {"condition": inputs, "real": real}


class TranslationInferer(Inferer):
    """Training/validation inferer: ``network(inputs)`` (B, 1, H, W); extra kwargs from the prepare-batch are
    ignored."""

    def __call__(self, inputs: torch.Tensor, network: nn.Module, *args, **kwargs) -> torch.Tensor:
        return network(inputs)


class ConditionalPatchInferer(Inferer):
    """pix2pix discriminator inferer for ``monai.engines.AdversarialTrainer``: patch logits (B, 1, h, w) of
    ``PatchDiscriminator`` on [condition (B, 6, H, W), image (B, 1, H, W)].

    ``AdversarialTrainer`` hands its *inputs* to the discriminator as the real images (its VAE use case). Here the
    inputs are the conditions, so an ``x`` with the condition's channel count is replaced by ``real``, the target.
    """

    def __call__(self, x: torch.Tensor, network: nn.Module, *args, condition: torch.Tensor,  # type: ignore[override]
                 real: torch.Tensor, **kwargs) -> torch.Tensor:
        image = real if x.shape[1] == condition.shape[1] else x
        return network(torch.cat([condition.detach(), image], 1))[-1]


class TranslationVolumeInferer(Inferer):
    """Synthesis with an image-space baseline for ``task``: condition images (B, 3, H, W) -> (B, 1, H, W), or
    field-of-view volumes (B, 3, X, Y, S) -> (B, 1, X, Y, S) (slices area-resized to ``image_size``, batched, and
    resized back with bicubic). Output clamped to [0, 1]. With ``views`` V > 1 the prediction is the mean over V
    flipped/transposed views (``bundle.tta``). With a ``texture`` (``bundle.texture.ScannerTexture``; the realism
    ablation "regression + texture"), volume outputs get a draw of the target's scanner texture (seeded by ``seed``)."""

    def __init__(self, task: str, tasks: Mapping[str, Mapping], image_size: int | None = None, views: int = 1,
                 texture: nn.Module | None = None, seed: int = 0) -> None:
        super().__init__()
        self.target = task_slots(task, tasks)[0]
        self.image_size, self.views = image_size, check_views(views)
        self.texture, self.seed = texture, int(seed)

    @torch.inference_mode()
    def predict(self, images: torch.Tensor, network: nn.Module) -> torch.Tensor:
        def run(x: torch.Tensor) -> torch.Tensor:
            target = torch.full((x.shape[0],), self.target, dtype=torch.long, device=x.device)
            return network(translation_inputs(x.float(), target))

        return view_mean(run, images, self.views)

    def __call__(self, inputs: torch.Tensor, network: nn.Module, *args, **kwargs) -> torch.Tensor:
        if inputs.ndim == 4:
            return self.predict(inputs, network).clamp(0, 1)
        if inputs.ndim != 5 or inputs.shape[1] != 3:
            raise ValueError(f"expected (B, 3, H, W) slices or (B, 3, X, Y, S) volumes, got {tuple(inputs.shape)}")
        out = map_fov_slices(lambda x: (self.predict(x, network),), inputs, self.image_size)[0].clamp(0, 1)
        if self.texture is not None:
            g = torch.Generator().manual_seed(self.seed + 1)
            out = self.texture.add_to_volume(out, ("C0", "DE", "T2")[self.target], g)
        return out


@torch.inference_mode()
def regression_fill(field: torch.Tensor, target: int, network: torch.nn.Module, fov: int,
                    image_size: int | None) -> torch.Tensor:
    """The image-space regressor (fully convolutional, input :func:`translation_inputs`) on every slice of the whole
    ``field`` (3, X', Y', S) at the model's pixel scale (area-downsampled by ``image_size/fov``, bicubic back):
    (X', Y', S) in [0, 1]. The whole-field fill of ``bundle.fill.FillFieldd``."""
    dev = next(network.parameters()).device
    x = torch.as_tensor(field).float().permute(3, 0, 1, 2).to(dev)  # (S, 3, X', Y')
    nx, ny = x.shape[2:]
    scale = (image_size or fov) / fov
    size = (max(1, round(nx * scale)), max(1, round(ny * scale)))
    small = area_resize(x, size)
    px, py = (-size[0]) % 16, (-size[1]) % 16  # BasicUNet: 4 poolings
    small = torch.nn.functional.pad(small, (0, py, 0, px))
    tgt = torch.full((small.shape[0],), int(target), dtype=torch.long, device=dev)
    out = network(translation_inputs(small, tgt))[:, :, : size[0], : size[1]]
    out = bicubic_resize(out, (nx, ny))
    return out[:, 0].permute(1, 2, 0).clamp(0, 1).float().cpu()


class LinearFit(nn.Module):
    """The linear-intensity baseline: ``target = a_t·c1 + b_t·c2 + c_t`` per task ``t``, on the same network input
    as the image-space regressors (B, 6, H, W) -> (B, 1, H, W). ``weight`` (3, 3): one row per target slot over the
    channels C0, DE, T2 (the target's own entry is unused: its channel is zeroed); ``bias`` (3,). Fitted in closed
    form by :func:`fit_linear` (least squares over every pixel of the training slices); no gradient training."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(3, 3), requires_grad=False)
        self.bias = nn.Parameter(torch.zeros(3), requires_grad=False)

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        onehot = inputs[:, 3:6, 0, 0]  # (B, 3)
        w, b = onehot @ self.weight, onehot @ self.bias  # (B, 3), (B,)
        return (w[:, :, None, None] * inputs[:, :3]).sum(1, keepdim=True) + b[:, None, None, None]


@torch.no_grad()
def fit_linear(model: LinearFit, slices: list[dict], tasks: Mapping[str, Mapping]) -> LinearFit:
    """Least-squares fit of ``model`` for every task on ``slices`` (each ``image`` (3, H, W) in [0, 1]), pooling all
    pixels of all slices; returns ``model`` with ``weight``/``bias`` set."""
    if not slices:
        raise ValueError("fit_linear: no training slices")
    x = torch.stack([s["image"] for s in slices]).double()  # (N, 3, H, W)
    for name in tasks:
        t, c1, c2 = task_slots(name, tasks)
        a = torch.stack([x[:, c1].flatten(), x[:, c2].flatten(), torch.ones_like(x[:, c1].flatten())], 1)
        coef = torch.linalg.lstsq(a, x[:, t].flatten()[:, None]).solution[:, 0]
        model.weight[t, c1], model.weight[t, c2], model.bias[t] = coef.float()
    return model


class MeanOfNetworks(nn.Module):
    """Ensemble of regressors with one interface: input (B, 6, H, W) -> the mean of the members' outputs
    (B, 1, H, W)."""

    def __init__(self, members) -> None:
        super().__init__()
        self.members = nn.ModuleList(members)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.stack([m(x) for m in self.members]).mean(0)


def _paths(path) -> list[str]:
    paths = [str(p) for p in path] if isinstance(path, (list, tuple)) else [str(path)]
    if not paths:
        raise WeightsError("an ensemble needs at least one weights file, got an empty list")
    return paths


def ensemble(network: nn.Module, path) -> nn.Module:
    """The network that ``path`` will be loaded into, built without loading anything: ``network`` itself for one
    weights file, a :class:`MeanOfNetworks` of copies of it for a list of files (loading is :func:`load_ensemble`,
    an explicit workflow step)."""
    paths = _paths(path)
    return network if len(paths) == 1 else MeanOfNetworks([network] + [copy.deepcopy(network) for _ in paths[1:]])


def load_ensemble(network: nn.Module, path, arch: Mapping | None = None) -> nn.Module:
    """``path`` (one weights file) loaded into ``network``; a list of files into the members of ``network`` when
    it is a :class:`MeanOfNetworks` of as many (see :func:`ensemble`), else into a new one of copies of ``network``.
    Each file is checked against ``arch``; eval mode. Returns the loaded network."""
    paths = _paths(path)
    if not (isinstance(network, MeanOfNetworks) and len(network.members) == len(paths)):
        network = ensemble(network, paths)
    members = list(network.members) if isinstance(network, MeanOfNetworks) else [network]
    for p, m in zip(paths, members):
        load_weights(p, m, dict(arch or {}))
    logger.info(f"regressor weights loaded from {', '.join(paths)}")
    return network.eval()


def load_guide(network: nn.Module, path, profile: str, features) -> nn.Module:
    """The regressor behind the sampler's ``guide: regression`` start: ``path`` (an image-space weights file, e.g.
    a ``unet_l1`` export, or a list of them: their mean) loaded into ``network`` (checked against
    ``profile``/``features``), in eval mode."""
    return load_ensemble(network, path, {"profile": profile, "features": features})


class CopyInferer(Inferer):
    """The trivial reference: condition sequence ``source`` (C0, DE or T2) copied unchanged as the synthesis:
    (B, 3, ...) -> (B, 1, ...), any spatial size; no network."""

    def __init__(self, source: str) -> None:
        super().__init__()
        from bundle.data import SEQUENCES

        if source not in SEQUENCES:
            raise ValueError(f"copy source must be one of {SEQUENCES}, got {source!r}")
        self.channel = SEQUENCES.index(source)

    def __call__(self, inputs: torch.Tensor, network: nn.Module | None = None, *args, **kwargs) -> torch.Tensor:
        return inputs[:, self.channel : self.channel + 1].float().clone()
