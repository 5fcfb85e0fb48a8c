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


TRAIN_STARTS = {"target": None, "guide": "guide_latent"}


def start_key(train_start: str) -> str | None:
    """The ``train_start`` knob -> the slice key the training noises (None: the target's own latent)."""
    if train_start not in TRAIN_STARTS:
        raise ConfigError(f"train_start must be one of {sorted(TRAIN_STARTS)}, got {train_start!r}")
    return TRAIN_STARTS[train_start]


class CMRDiffPrepareBatch(DiffusionPrepareBatch):
    """Builds a training/validation batch for task ``task`` (``any`` draws the target per sample).

    Returns ``(target_latent, (target, mask_latent), (), kwargs)`` with kwargs for
    :class:`CMRDiffTrainInferer`: ``noise``, ``timesteps``, ``cond`` (B, 3·lc, h, w), ``images``, ``keep`` (B, 3),
    ``class_labels`` (B,). ``target`` is the noise (epsilon) or, with a v-prediction ``scheduler``, the velocity;
    with an ``RFlowScheduler`` (``prediction_type`` ``flow``) the rectified-flow velocity ``x0 − noise``. The
    timesteps are uniform integers in [0, ``max_timestep``) for every scheduler (MONAI's RFlow ``uniform``
    discrete draw, made with the batch's generator).
    ``seed`` makes noise, timesteps and dropout a function of the batch's slices (reproducible validation loss).
    ``joint_dropout`` drops the two conditions only together (the plain-LDM baseline's single-scale CFG).
    ``max_timestep`` < ``num_train_timesteps`` trains only the noise levels t < max_timestep, the ones a sampler
    started at ``strength`` ≤ max_timestep / num_train_timesteps visits (SDEdit from the regression guide).
    ``prediction_type`` ``sample``: the target is the clean target latent (x0-prediction).
    ``start_key`` (e.g. ``guide_latent``, (3·lc, h, w) per slice, the guide regressor's prediction of each sequence
    as a latent): the bridge recipe, where the network sees that latent noised, not the target's, and learns to map
    it to the target (kwarg ``start`` for :class:`CMRDiffTrainInferer`); it needs ``prediction_type`` ``sample``
    (an epsilon or velocity target diverges as t -> 0 when the noised latent is not the target's).
    ``image_goal`` (``loss_space: image``): the goal is the pair (target image (B, 1, H, W), myocardium mask
    (B, 1, H, W)) for :class:`bundle.losses.DecodedLoss`, instead of latents (the inferer then returns the model's
    clean-latent estimate, :class:`CMRDiffTrainInferer` ``x0_output``).
    ``loss_weight`` (timesteps (B,) -> weights (B,), e.g. :class:`bundle.losses.MinSNRWeight`): the goal becomes a
    triple whose third entry weights each sample's loss.
    ``augment`` (a dictionary transform of the collated batch, e.g. :class:`bundle.transforms.BatchFlipRot90d`): run
    on the batch first (training only; ``latent_augment_mode: batch``).
    """

    def __init__(self, num_train_timesteps: int, task: str, tasks: Mapping[str, Mapping], latent_channels: int,
                 drop_prob: float = 0.05, scheduler: nn.Module | None = None, seed: int | None = None,
                 joint_dropout: bool = False, max_timestep: int | None = None, prediction_type: str | None = None,
                 start_key: str | None = None, image_goal: bool = False,
                 loss_weight: Callable[[torch.Tensor], torch.Tensor] | None = None,
                 augment: Callable[[Mapping], Mapping] | None = None) -> None:
        super().__init__(num_train_timesteps=num_train_timesteps)
        self.augment = augment
        self.loss_weight = loss_weight
        self.sample_target = prediction_type == "sample"
        if (prediction_type == "flow") != isinstance(scheduler, RFlowScheduler):
            raise ConfigError(f"prediction_type 'flow' and an RFlowScheduler go together (prediction_type "
                              f"{prediction_type!r}, scheduler {type(scheduler).__name__})")
        self.start_key, self.image_goal = start_key or None, flag(image_goal, "image_goal")
        if self.start_key and not self.sample_target:
            raise ConfigError(f"train_start 'guide' (the bridge recipe) needs prediction_type 'sample', got {prediction_type!r}")
        self.max_timestep = num_train_timesteps if max_timestep is None else int(max_timestep)
        if not 1 <= self.max_timestep <= num_train_timesteps:
            raise ConfigError(f"max_train_timestep must be in [1, {num_train_timesteps}], got {max_timestep}")
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
        timesteps = torch.randint(0, self.max_timestep, (b,), generator=g).long()
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
        if self.start_key:
            infer["start"] = self._start(batchdata, tgt).to(**to)
        if self.image_goal:  # the target image and its myocardium on the image grid
            image = batchdata["image"].float()[torch.arange(b), tgt][:, None]
            image_mask = torch.zeros_like(image) if image_mask is None else image_mask.float()
            loss_target = (image.to(**to), image_mask.to(**to))
        else:
            loss_target = (goal, mask.to(**to))
        if self.loss_weight is not None:  # per-sample weights (B,) of the timesteps, e.g. min-SNR-γ
            loss_target = (*loss_target, self.loss_weight(timesteps))
        return target, loss_target, (), infer

    def _start(self, batchdata: Mapping, tgt: torch.Tensor) -> torch.Tensor:
        """The bridge recipe's start (B, lc, h, w): the guide latent (``start_key``) of each sample's target slot."""
        if self.start_key not in batchdata:
            raise ConfigError(f"the bridge recipe needs {self.start_key!r} in every slice (the guide's latents)")
        start = batchdata[self.start_key].float()
        start = start.view(start.shape[0], 3, self.lc, *start.shape[2:])
        return start[torch.arange(len(tgt)), tgt]


class CMRDiffTrainInferer(DiffusionInferer):
    """``__call__(inputs, network, noise, timesteps, cond, images, keep, class_labels[, start])``: noises the target
    latent ``inputs`` (B, lc, h, w), or ``start`` (B, lc, h, w) when given (the bridge recipe), to ``timesteps`` and
    returns the network's prediction (B, lc, h, w). ``x0_output`` (``loss_space: image``): returns instead the
    clean-latent estimate x̂0 that prediction implies under the scheduler (epsilon: (z_t − √(1−ᾱ_t)·ε̂)/√ᾱ_t;
    v: √ᾱ_t·z_t − √(1−ᾱ_t)·v̂; sample: the prediction; rectified flow: z_t + v̂·t/T)."""

    def __init__(self, scheduler: nn.Module, x0_output: bool = False) -> None:
        super().__init__(scheduler)
        self.x0_output = flag(x0_output, "x0_output")

    def x0(self, pred: torch.Tensor, noisy: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
        """The clean-latent estimate (B, lc, h, w) of the prediction ``pred`` made at ``noisy`` (B, lc, h, w), t."""
        if isinstance(self.scheduler, RFlowScheduler):
            return noisy + pred * (timesteps.float() / self.scheduler.num_train_timesteps).view(-1, 1, 1, 1)
        kind = self.scheduler.prediction_type
        if kind == "sample":
            return pred
        ab = self.scheduler.alphas_cumprod.to(pred.device)[timesteps].view(-1, 1, 1, 1)
        if kind == "v_prediction":
            return ab.sqrt() * noisy - (1 - ab).sqrt() * pred
        return (noisy - (1 - ab).sqrt() * pred) / ab.sqrt()

    def __call__(self, inputs: torch.Tensor, diffusion_model: nn.Module, noise: torch.Tensor,  # type: ignore[override]
                 timesteps: torch.Tensor, cond: torch.Tensor, images: torch.Tensor, keep: torch.Tensor,
                 class_labels: torch.Tensor, start: torch.Tensor | None = None, **kwargs) -> torch.Tensor:
        clean = inputs if start is None else start
        noisy = self.scheduler.add_noise(original_samples=clean, noise=noise, timesteps=timesteps)
        pred = diffusion_model(torch.cat([noisy, cond], 1), timesteps, class_labels=class_labels, images=images,
                               keep=keep)
        return self.x0(pred, noisy, timesteps) if self.x0_output else pred


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
                  device: torch.device | str = "cpu", batch_size: int = 32, views: int = 1,
                  augment: Callable[[dict], dict] | None = None, seed: int = 0) -> list[dict]:
    """The latent cache: add ``latent`` (3·lc, h, w) = ``mu × scale_factor`` of each sequence to every slice
    dict (``image`` (3, H, W)). The VAE is frozen, so this runs once instead of every epoch.

    ``views`` > 1 (with ``augment``, an image-space dictionary transform of ``image`` and ``mask``, seeded with
    ``seed``): each slice also gets ``views``, a list of ``views`` dicts ``{image, latent[, mask]}``, the first the
    slice itself and the others ``augment``'s draws encoded the same way (pick one per epoch with
    :class:`bundle.transforms.RandViewd`)."""
    if views > 1 and augment is None:
        raise ValueError("encode_slices: views > 1 needs an image-space augment transform")
    autoencoder.eval()

    def with_latents(items: Sequence[dict]) -> list[dict]:
        return add_latents(autoencoder, items, scale_factor, device, batch_size)

    out = with_latents(slices)
    if views > 1:
        keys = ("image", "mask")  # a slice may lack the mask (unlabelled cases)
        if hasattr(augment, "set_random_state"):
            augment.set_random_state(seed=seed)
        for s in out:
            s["views"] = [{k: s[k] for k in ("latent", *keys) if k in s}]
        for _ in range(views - 1):
            drawn = [augment({k: torch.as_tensor(s[k]).clone() for k in keys if k in s}) for s in out]
            drawn = with_latents([{k: torch.as_tensor(d[k]).as_subclass(torch.Tensor) for k in keys if k in d}
                                  for d in drawn])
            for s, d in zip(out, drawn):
                s["views"].append(d)
    return out


def validate_at_end(trainer, validator, interval: int) -> None:
    """Attach to ``trainer``: when a run ends (its last epoch, or stopped early by its time limit) on an epoch that
    was not a validation epoch (``epoch % interval != 0``), validate once more, so that a run shorter than
    ``interval`` still has a validated (best) checkpoint to export instead of failing."""
    from ignite.engine import Events

    def run(engine) -> None:
        if engine.state.epoch and engine.state.epoch % int(interval):
            validator.run(engine.state.epoch)

    trainer.add_event_handler(Events.COMPLETED, run)
