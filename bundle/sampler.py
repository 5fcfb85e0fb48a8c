"""Guided two-scale classifier-free-guidance sampler (a ``monai.inferers.Inferer``).

``inferer(images, network)`` maps condition images (B, 3, H, W) in the canonical order C0, DE, T2 (the target's
channel is ignored) to the synthesized target (B, 1, H, W) in [0, 1]:

1. encode the conditions with the frozen VAE (``mu × scale_factor``) and the condition encoder — once;
2. start from the guide's latent noised to ``strength`` (SDEdit; ``strength=1`` = pure noise). The guide is a
   condition sequence (the paper: bSSFP), or with ``guide="regression"`` the prediction of an image-space
   regressor ``guide_network`` (input as in ``bundle.regression.translation_inputs``);
3. DDIM steps with ε̃ = ε(∅,∅) + c_I1·[ε(c1,∅) − ε(∅,∅)] + c_I2·[ε(c1,c2) − ε(c1,∅)], the predictions of
   every slice in **one** batched forward pass per step. With c_I1 = c_I2 = c the ε(c1,∅) terms cancel
   (ε̃ = ε(∅,∅) + c·[ε(c1,c2) − ε(∅,∅)]) and that branch is not computed (2 instead of 3 predictions a step).
   With an ``RFlowScheduler`` (``prediction_type: flow``) the same combination of velocities drives Euler steps
   z ← z + ṽ·Δt of the rectified flow, the start being ``(1 − s)·guide + s·noise`` at strength s;
4. decode ``z / scale_factor``. With ``guide="regression"`` and ``residual=True`` the output is the regressor's
   prediction plus what the diffusion changed: ``r + dec(z) − dec(enc(r))`` (the VAE's own reconstruction error of
   the start cancels; at strength → 0 the output is ``r`` itself).
With ``cache_interval`` k > 1 (DeepCache, ``bundle.deepcache``) only every k-th step runs the whole UNet; the steps
in between reuse its deep features and run the full-resolution blocks alone (same number of steps, less work).
With ``num_samples`` N > 1 the N samples run in the same batch; the mean is returned and the per-pixel
standard deviation is kept in ``self.uncertainty``; the first of the N samples (identity view, first noise draw) is
kept beside them, so a caller can write one realistic sample too. ``synth_output`` picks what is returned: ``"mean"``
(default: the PSNR-optimal estimate, blurred where the samples disagree) or ``"sample"`` (that first sample: sharper,
but it may show structure that is not in the patient); the other one is kept (``mean_volume`` / ``sample_volume``).
With ``views`` V > 1 (``bundle.tta``) the N samples are spread over up to V flipped/transposed views of the input
(``bundle.tta.effective_views``: the most that divide N; N/V samples each, the guide run in each view), mapped back
before the mean: the same work as N samples of one view.
With ``estimator="x0"`` each sample stops after its first step and returns that step's estimate of the clean latent
(the denoiser's posterior mean given the noised start, ``x̂0 = (z_t − √(1−ᾱ_t)·ε̃) / √ᾱ_t``): one network call
instead of ``int(steps·strength)``; the mean over N noise draws and V views is then a smoothed posterior mean and
the std the spread of those estimates, not of samples (rectified flow: ``x̂0 = z_t + ṽ·t/T``). ``"sample"`` (default)
runs the chain to t = 0.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from monai.inferers import Inferer
from torch import nn
from tqdm import tqdm

from bundle.data import map_fov_slices
from bundle.deepcache import DeepCacheUNet
from bundle.engine import task_slots
from bundle.errors import ConfigError, flag, is_null
from bundle.tta import effective_views, stack_views, unstack_views


ESTIMATORS = ("sample", "x0")
SYNTH_OUTPUTS = ("mean", "sample")  # what ``__call__`` returns (and the workflow writes as ``_synth``) when N > 1


class CMRDiffSampler(Inferer):
    def __init__(
        self,
        scheduler,
        autoencoder: nn.Module,
        scale_factor: float,
        task: str,
        tasks: Mapping[str, Mapping],
        num_inference_steps: int = 50,
        guidance_scale_1: float = 1.5,
        guidance_scale_2: float = 1.5,
        strength: float = 1.0,
        guide: str | None = None,
        num_samples: int = 1,
        seed: int | None = 0,
        progress: bool = True,
        image_size: int | None = None,
        compile: bool = False,
        cache_interval: int = 1,
        guide_network: nn.Module | None = None,
        residual: bool = False,
        views: int = 1,
        estimator: str = "sample",
        synth_output: str = "mean",
        texture: nn.Module | None = None,
    ) -> None:
        super().__init__()
        self.target, self.c1, self.c2 = task_slots(task, tasks)
        seqs = ("C0", "DE", "T2")
        if is_null(guide, "default"):
            guide = None  # (the command line cannot pass None: MONAI drops None overrides, so "default" works too)
        residual = flag(residual, "residual")  # "--residual false" arrives as a string
        if guide is None:  # bSSFP where it is a condition, else T2
            guide = "C0" if self.target != 0 else "T2"
        if guide == "regression":
            if guide_network is None:
                raise ConfigError("guide 'regression' needs a guide_network (the regressor's weights: field `guide_weights`)")
        elif guide not in seqs or seqs.index(guide) == self.target:
            raise ConfigError(f"guide must be 'regression' or a condition sequence of task {task!r} (one of "
                             f"{[seqs[self.c1], seqs[self.c2]]}), got {guide!r}")
        _check("guidance_scale_1", guidance_scale_1, lambda v: v >= 0, ">= 0")
        _check("guidance_scale_2", guidance_scale_2, lambda v: v >= 0, ">= 0")
        _check("strength", strength, lambda v: 0 < v <= 1, "in (0, 1]")
        _check("num_inference_steps", num_inference_steps, lambda v: int(v) == v and v >= 1, "an integer >= 1")
        _check("num_samples", num_samples, lambda v: int(v) == v and v >= 1, "an integer >= 1")
        _check("cache_interval", cache_interval, lambda v: int(v) == v and v >= 1, "an integer >= 1")
        if estimator not in ESTIMATORS:
            raise ConfigError(f"estimator must be one of {list(ESTIMATORS)}, got {estimator!r}")
        if synth_output not in SYNTH_OUTPUTS:
            raise ConfigError(f"synth_output must be one of {list(SYNTH_OUTPUTS)}, got {synth_output!r}")
        if compile and cache_interval > 1:
            raise ConfigError("compile and cache_interval > 1 cannot be combined: choose one")
        self.scheduler, self.autoencoder, self.scale_factor = scheduler, autoencoder, float(scale_factor)
        self.guide = "regression" if guide == "regression" else seqs.index(guide)
        self.guide_network, self.residual = guide_network, bool(residual)
        if self.residual and guide != "regression":
            raise ConfigError("residual needs guide 'regression' (it adds the diffusion's change to the regressor's image)")
        self._start: tuple[torch.Tensor, torch.Tensor] | None = None
        self.steps, self.s1, self.s2 = int(num_inference_steps), float(guidance_scale_1), float(guidance_scale_2)
        self.strength, self.num_samples, self.seed, self.progress = float(strength), int(num_samples), seed, progress
        self.image_size, self.compile, self.cache_interval = image_size, bool(compile), int(cache_interval)
        self.views = effective_views(views, int(num_samples))
        self.estimator, self.synth_output = estimator, synth_output
        self.texture = texture  # bundle.texture.ScannerTexture: added to the sample output(s) of volume calls only
        self._compiled: tuple[int, nn.Module] | None = None
        # the outputs of the last call besides the returned one (None with num_samples 1, whose output is the single
        # sample): slices (B, 1, H, W) after a (B, 3, H, W) call, volumes (B, 1, X, Y, S) after a volume call
        self.uncertainty: torch.Tensor | None = None
        self.uncertainty_volume: torch.Tensor | None = None
        self.mean_image: torch.Tensor | None = None
        self.sample_image: torch.Tensor | None = None
        self.mean_volume: torch.Tensor | None = None
        self.sample_volume: torch.Tensor | None = None

    def timesteps(self) -> torch.Tensor:
        """The timesteps actually run: the last ``int(steps·strength)`` of the full schedule (DDIM: 980 … 0 for
        50 steps; rectified flow: 1000 … 20, each step Δt = 1/steps)."""
        self.scheduler.set_timesteps(self.steps)
        n = min(max(int(self.steps * self.strength), 1), self.steps)
        return self.scheduler.timesteps[self.steps - n :]

    def denoiser(self, net: nn.Module) -> nn.Module:
        """``net``, or with ``compile=True`` its ``torch.compile``d form (weights frozen into the graph: inference
        only), built on first use and kept for later calls with the same network (the first call pays ~1 min)."""
        if not self.compile:
            return net
        if self._compiled is None or self._compiled[0] != id(net):
            import torch._inductor.config as inductor_config

            inductor_config.freezing = True
            self._compiled = (id(net), torch.compile(net, dynamic=False))
        return self._compiled[1]

    @torch.inference_mode()
    def sample(self, images: torch.Tensor, network: nn.Module
               ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        """images (B, 3, H, W) -> (mean (B, 1, H, W), std (B, 1, H, W), first sample (B, 1, H, W)); std and the
        first sample are None when num_samples == 1 (the mean is then the single sample). The first sample is the
        identity view's first noise draw (for the batch's first slice, with views 1, what ``num_samples`` 1 draws)."""
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"expected condition images (B, 3, H, W) in order C0, DE, T2, got {tuple(images.shape)}")
        v, b = self.views, images.shape[0]
        x = self.samples(stack_views(images, v), network, self.num_samples // v)  # (V·B, N/V, 1, H, W)
        x = unstack_views(x, v).transpose(0, 1).reshape(b, self.num_samples, *x.shape[2:])  # (B, N, 1, H, W)
        if self.num_samples == 1:
            return x[:, 0], None, None
        return x.mean(1), x.std(1, unbiased=False), x[:, 0]

    def samples(self, images: torch.Tensor, network: nn.Module, n: int) -> torch.Tensor:
        """images (B, 3, H, W) -> n samples (B, n, 1, H, W) in [0, 1]."""
        net = network.module if hasattr(network, "module") else network
        dev = images.device
        b = images.shape[0]
        g = torch.Generator(device="cpu")
        if self.seed is not None:
            g.manual_seed(int(self.seed))
        conds = [self.c1, self.c2]  # only the conditions are encoded: the target's slot stays zero
        mu = self.autoencoder.encode(images[:, conds].reshape(b * 2, 1, *images.shape[2:]))[0] * self.scale_factor
        lc, h, w = mu.shape[1:]
        lat = mu.new_zeros(b, 3, lc, h, w)
        lat[:, conds] = mu.reshape(b, 2, lc, h, w)  # (B, 3, lc, h, w)
        # the guidance branches (c1,c2), (c1,∅), (∅,∅) as slot masks (k, 3); (c1,∅) only when c_I1 != c_I2
        keep = torch.zeros(3, 3, dtype=torch.bool, device=dev)
        keep[0, [self.c1, self.c2]] = True
        keep[1, self.c1] = True
        if self.s1 == self.s2:
            keep = keep[[0, 2]]
        k = keep.shape[0]
        keep = keep.repeat_interleave(b * n, 0)  # (k·B·N, 3), branch-major
        lat_bn = lat.repeat_interleave(n, 0).repeat(k, 1, 1, 1, 1)  # (k·B·N, 3, lc, h, w)
        cond = (lat_bn * keep.view(-1, 3, 1, 1, 1)).reshape(-1, 3 * lc, h, w)
        imgs = images.repeat_interleave(n, 0).repeat(k, 1, 1, 1)
        context = net.context(imgs, keep)  # constant across steps: computed once
        labels = torch.full((k * b * n,), self.target, dtype=torch.long, device=dev)
        noise = torch.randn((b * n, lc, h, w), generator=g).to(dev)
        ts = self.timesteps()
        start = self.guide_latent(images, lat) if self.strength < 1.0 or self.residual else None
        if self.strength >= 1.0:
            z = noise
        else:
            z = self.scheduler.add_noise(start.repeat_interleave(n, 0), noise, ts[:1].to(dev).repeat(b * n))
        unet = self.denoiser(net)
        cached = DeepCacheUNet(net.unet) if self.cache_interval > 1 else None
        for i, t in enumerate(tqdm(ts, desc="sampling", disable=not self.progress, leave=False)):
            tt = torch.full((k * b * n,), int(t), dtype=torch.long, device=dev)
            x_in = torch.cat([z.repeat(k, 1, 1, 1), cond], 1)
            if cached is None:
                out = unet(x_in, tt, context=context, class_labels=labels)
            else:
                out = cached(x_in, tt, context=context, class_labels=labels, full=i % self.cache_interval == 0)
            if k == 2:
                e_full, e_null = out.chunk(2)
                eps = e_null + self.s1 * (e_full - e_null)
            else:
                e_full, e_c1, e_null = out.chunk(3)
                eps = e_null + self.s1 * (e_c1 - e_null) + self.s2 * (e_full - e_c1)
            z, x0 = self.scheduler.step(eps, int(t), z)
            if self.estimator == "x0":  # the one-step estimate of the clean latent
                z = x0
                break
        x = self.autoencoder.decode_stage_2_outputs(z / self.scale_factor)
        x = x.reshape(b, n, *x.shape[1:])
        if self.residual:  # r + dec(z) − dec(enc(r)): the start's VAE reconstruction error cancels
            pred, start = self._start
            base = self.autoencoder.decode_stage_2_outputs(start / self.scale_factor)
            x = x + (pred - base)[:, None]
        return x.clamp(0, 1)

    def guide_latent(self, images: torch.Tensor, lat: torch.Tensor) -> torch.Tensor:
        """The SDEdit start (B, lc, h, w) before noising: the guide sequence's latent from ``lat`` (B, 3, lc, h, w),
        or the VAE latent of the regressor's prediction from condition ``images`` (B, 3, H, W)."""
        if self.guide != "regression":
            return lat[:, self.guide]
        from bundle.regression import translation_inputs

        target = torch.full((images.shape[0],), self.target, dtype=torch.long, device=images.device)
        pred = self.guide_network(translation_inputs(images.float(), target)).clamp(0, 1)  # (B, 1, H, W)
        start = self.autoencoder.encode(pred)[0] * self.scale_factor
        self._start = (pred, start)
        return start

    def __call__(self, inputs: torch.Tensor, network: nn.Module, *args, **kwargs) -> torch.Tensor:
        """Slices (B, 3, H, W) -> (B, 1, H, W); or field-of-view volumes (B, 3, X, Y, S) -> (B, 1, X, Y, S):
        every slice is resized to ``image_size`` (area), sampled in one batch and resized back (bicubic).
        Returns the mean of the N samples, or with ``synth_output="sample"`` the first sample (the same for N 1);
        with a ``texture``, volume calls add a draw of the scanner's texture to the sample (never to the mean of N).
        Kept for the caller (None with N 1): the uncertainty in ``self.uncertainty`` / ``self.uncertainty_volume``,
        the mean and the first sample in ``self.mean_image`` / ``self.sample_image`` (slices) or
        ``self.mean_volume`` / ``self.sample_volume`` (volumes; clamped to [0, 1] like the output)."""
        if inputs.ndim == 4:
            mean, self.uncertainty, first = self.sample(inputs, network)
            self.mean_image, self.sample_image = (mean, first) if first is not None else (None, None)
            return self._chosen(mean, first)
        if inputs.ndim != 5 or inputs.shape[1] != 3:
            raise ValueError(f"expected (B, 3, H, W) slices or (B, 3, X, Y, S) volumes, got {tuple(inputs.shape)}")
        mean, std, first = map_fov_slices(lambda x: self.sample(x, network), inputs, self.image_size)
        if self.texture is not None:  # the scanner's texture on the field's sample output, never on the mean of N
            seq = ("C0", "DE", "T2")[self.target]
            g = torch.Generator().manual_seed(int(self.seed) + 1) if self.seed is not None else None
            if first is not None:
                first = self.texture.add_to_volume(first, seq, g)
            elif self.num_samples == 1:  # the output is the single sample
                mean = self.texture.add_to_volume(mean, seq, g)
        mean = mean.clamp(0, 1)
        first = first.clamp(0, 1) if first is not None else None  # bicubic resizing may over/undershoot, as the mean
        self.uncertainty_volume = std.clamp_min(0) if std is not None else None
        self.mean_volume, self.sample_volume = (mean, first) if first is not None else (None, None)
        return self._chosen(mean, first)

    def _chosen(self, mean: torch.Tensor, first: torch.Tensor | None) -> torch.Tensor:
        """The output ``synth_output`` names: ``mean``, or the first sample (``first``; None with N 1: ``mean`` is
        then the single sample). Same shape as ``mean``."""
        return first if self.synth_output == "sample" and first is not None else mean


def _check(name: str, value, ok, what: str) -> None:
    try:
        good = bool(ok(value))
    except (TypeError, ValueError, OverflowError):  # e.g. int("abc") of a command-line string
        good = False
    if not good:
        raise ConfigError(f"{name} must be {what}, got {value!r}")
