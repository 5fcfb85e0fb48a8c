"""One CMRDiff training iteration for ``monai.engines.SupervisedTrainer``: a prepare-batch that forms
(target latent, noise, timesteps, condition slots with dropout) and an inferer that noises and denoises.

Batches come from the latent cache (:func:`encode_slices`): ``image`` (B, 3, H, W), ``latent``
(B, 3·lc, h, w) = VAE ``mu`` × scale factor per sequence (C0, DE, T2) and optionally ``mask`` (B, 1, H, W).
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Mapping, Sequence

import torch
from monai.engines import DiffusionPrepareBatch
from monai.inferers import DiffusionInferer
from monai.networks.schedulers import RFlowScheduler
from torch import nn

from bundle.data import SEQUENCES
from bundle.errors import ConfigError, flag
from bundle.losses import latent_mask


def task_spec(task: str, tasks: Mapping[str, Mapping]) -> Mapping:
    """``{"target": SEQ, "conditions": [SEQ, SEQ]}`` of ``task``; a clear error for an unknown task name."""
    if task not in tasks:
        raise ConfigError(f"unknown task {task!r}: expected one of {sorted(tasks)} (field `task`)")
    return tasks[task]


def task_slots(task: str, tasks: Mapping[str, Mapping]) -> tuple[int, int, int]:
    """(target, condition 1, condition 2) slot indices of ``task`` in the canonical order C0, DE, T2."""
    spec = task_spec(task, tasks)
    return (SEQUENCES.index(spec["target"]), *(SEQUENCES.index(c) for c in spec["conditions"]))


def batch_generator(batchdata: Mapping, seed: int | None) -> torch.Generator | None:
    """A generator seeded by ``seed`` and the batch's ``case``/``slice`` keys (None without a seed): random draws
    that depend only on which slices are in the batch, e.g. a reproducible validation loss."""
    if seed is None:
        return None
    key = f"{list(batchdata.get('case', []))}{list(map(int, batchdata.get('slice', [])))}"
    return torch.Generator().manual_seed(seed + zlib.crc32(key.encode()))


def condition_dropout(batch_size: int, p: float, generator: torch.Generator | None = None, joint: bool = False):
    """InstructPix2Pix-style dropout masks (keep1, keep2), each (B,) bool: with probability ``p`` each,
    only condition 2 is dropped, both are dropped, or only condition 1 is dropped.
    ``joint=True`` (plain single-scale CFG): both are dropped together with probability ``p``."""
    r = torch.rand(batch_size, generator=generator)
    if joint:
        return r >= p, r >= p
    drop2 = r < 2 * p
    drop1 = (r >= p) & (r < 3 * p)
    return ~drop1, ~drop2


class CMRDiffPrepareBatch(DiffusionPrepareBatch):
    """Builds a training/validation batch for task ``task`` (``any`` draws the target per sample).

    Returns ``(target_latent, (target, mask_latent), (), kwargs)`` with kwargs for
    :class:`CMRDiffTrainInferer`: ``noise``, ``timesteps``, ``cond`` (B, 3·lc, h, w), ``images``, ``keep`` (B, 3),
    ``class_labels`` (B,). ``target`` is the noise (epsilon) or, with a v-prediction ``scheduler``, the velocity;
    with an ``RFlowScheduler`` (``prediction_type`` ``flow``) the rectified-flow velocity ``x0 − noise``. The
    timesteps are uniform integers in [0, ``num_train_timesteps``) for every scheduler (MONAI's RFlow ``uniform``
    discrete draw, made with the batch's generator).
    ``seed`` makes noise, timesteps and dropout a function of the batch's slices (reproducible validation loss).
    ``joint_dropout`` drops the two conditions only together (the plain-LDM baseline's single-scale CFG).
    ``prediction_type`` ``sample``: the target is the clean target latent (x0-prediction).
    ``augment`` (a dictionary transform of the collated batch, e.g. :class:`bundle.transforms.BatchFlipRot90d`): run
    on the batch first (training only; ``latent_augment_mode: batch``).
    """

    def __init__(self, num_train_timesteps: int, task: str, tasks: Mapping[str, Mapping], latent_channels: int,
                 drop_prob: float = 0.05, scheduler: nn.Module | None = None, seed: int | None = None,
                 joint_dropout: bool = False, prediction_type: str | None = None,
                 augment: Callable[[Mapping], Mapping] | None = None) -> None:
        super().__init__(num_train_timesteps=num_train_timesteps)
        self.augment = augment
        self.sample_target = prediction_type == "sample"
        if (prediction_type == "flow") != isinstance(scheduler, RFlowScheduler):
            raise ConfigError(f"prediction_type 'flow' and an RFlowScheduler go together (prediction_type "
                              f"{prediction_type!r}, scheduler {type(scheduler).__name__})")
        self.num_train_timesteps = int(num_train_timesteps)
        joint_dropout = flag(joint_dropout, "joint_dropout")  # the command line passes "false" as a string
        if not 0 <= drop_prob <= (1.0 if joint_dropout else 1 / 3):
            raise ConfigError(f"drop_prob must be in [0, {'1' if joint_dropout else '1/3'}], got {drop_prob}")
        self.joint_dropout = joint_dropout
        names = sorted(tasks) if task == "any" else [task]
        self.slots = torch.tensor([task_slots(t, tasks) for t in names])  # (n_tasks, 3)
        self.lc, self.drop_prob, self.scheduler, self.seed = latent_channels, drop_prob, scheduler, seed

    def __call__(self, batchdata: Mapping, device=None, non_blocking: bool = False, **kwargs):
        # plain tensors: the network then runs without MetaTensor bookkeeping (same values, same random draws)
        batchdata = {k: v.as_subclass(torch.Tensor) if isinstance(v, torch.Tensor) else v for k, v in batchdata.items()}
        if self.augment is not None:
            batchdata = self.augment(batchdata)
        g = batch_generator(batchdata, self.seed)
        lat = batchdata["latent"].float()
        b, _, h, w = lat.shape
        lat = lat.view(b, 3, self.lc, h, w)
        slots = self.slots[torch.randint(len(self.slots), (b,), generator=g)]  # (B, 3): target, c1, c2
        tgt, c1, c2 = slots.unbind(1)
        keep1, keep2 = condition_dropout(b, self.drop_prob, g, self.joint_dropout)
        keep = torch.zeros(b, 3, dtype=torch.bool)
        keep[torch.arange(b), c1] = keep1
        keep[torch.arange(b), c2] = keep2
        target = lat[torch.arange(b), tgt]
        cond = (lat * keep.view(b, 3, 1, 1, 1)).view(b, 3 * self.lc, h, w)
        noise = torch.randn(target.shape, generator=g)
        timesteps = torch.randint(0, self.num_train_timesteps, (b,), generator=g).long()
        image_mask = batchdata.get("mask")
        mask = latent_mask(image_mask, (h, w)) if image_mask is not None else torch.zeros(b, 1, h, w)
        to = dict(device=device, non_blocking=non_blocking)
        target, noise, timesteps = target.to(**to), noise.to(**to), timesteps.to(**to)
        if self.sample_target:
            goal = target
        elif isinstance(self.scheduler, RFlowScheduler):
            goal = target - noise
        else:
            goal = self.scheduler.get_velocity(target, noise, timesteps) if self.scheduler is not None else noise
        infer = {"noise": noise, "timesteps": timesteps, "cond": cond.to(**to),
                 "images": batchdata["image"].float().to(**to), "keep": keep.to(**to), "class_labels": tgt.to(**to)}
        return target, (goal, mask.to(**to)), (), infer


class CMRDiffTrainInferer(DiffusionInferer):
    """``__call__(inputs, network, noise, timesteps, cond, images, keep, class_labels)``: noises the target latent
    ``inputs`` (B, lc, h, w) to ``timesteps`` and returns the network's prediction (B, lc, h, w)."""

    def __call__(self, inputs: torch.Tensor, diffusion_model: nn.Module, noise: torch.Tensor,  # type: ignore[override]
                 timesteps: torch.Tensor, cond: torch.Tensor, images: torch.Tensor, keep: torch.Tensor,
                 class_labels: torch.Tensor, **kwargs) -> torch.Tensor:
        noisy = self.scheduler.add_noise(original_samples=inputs, noise=noise, timesteps=timesteps)
        return diffusion_model(torch.cat([noisy, cond], 1), timesteps, class_labels=class_labels, images=images,
                               keep=keep)


@torch.no_grad()
def add_latents(autoencoder: nn.Module, items: Sequence[dict], scale_factor: float, device: torch.device | str = "cpu",
                batch_size: int = 32, key: str = "latent",
                images: Callable[[torch.Tensor], torch.Tensor] | None = None) -> list[dict]:
    """``{**item, key: (3·lc, h, w)}`` for every item: ``mu × scale_factor`` of each of the three images of
    ``images(x)`` (default: the item's ``image`` x (b, 3, H, W) itself), ``batch_size`` items at a time."""
    out = []
    for i in range(0, len(items), batch_size):
        chunk = items[i : i + batch_size]
        x = torch.stack([torch.as_tensor(s["image"]) for s in chunk]).float().to(device)
        x = x if images is None else images(x)  # (b, 3, H, W)
        b = x.shape[0]
        mu = autoencoder.encode(x.reshape(b * 3, 1, *x.shape[2:]))[0] * scale_factor  # (3b, lc, h, w)
        out.extend({**s, key: m} for s, m in zip(chunk, mu.reshape(b, -1, *mu.shape[2:]).cpu()))
    return out


@torch.no_grad()
def encode_slices(autoencoder: nn.Module, slices: Sequence[dict], scale_factor: float,
                  device: torch.device | str = "cpu", batch_size: int = 32) -> list[dict]:
    """The latent cache: add ``latent`` (3·lc, h, w) = ``mu × scale_factor`` of each sequence to every slice
    dict (``image`` (3, H, W)). The VAE is frozen, so this runs once instead of every epoch."""
    autoencoder.eval()
    return add_latents(autoencoder, slices, scale_factor, device, batch_size)


def validate_at_end(trainer, validator, interval: int) -> None:
    """Attach to ``trainer``: when a run ends (its last epoch, or stopped early by its time limit) on an epoch that
    was not a validation epoch (``epoch % interval != 0``), validate once more, so that a run shorter than
    ``interval`` still has a validated (best) checkpoint to export instead of failing."""
    from ignite.engine import Events

    def run(engine) -> None:
        if engine.state.epoch and engine.state.epoch % int(interval):
            validator.run(engine.state.epoch)

    trainer.add_event_handler(Events.COMPLETED, run)
