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
With ``num_samples`` N > 1 the N samples run in the same batch; their mean, per-pixel standard deviation and the
first of the N samples (identity view, first noise draw: one realistic sample) are the outputs. ``synth_output`` picks
what the inferer returns: ``"mean"`` (default: the PSNR-optimal estimate, blurred where the samples disagree) or
``"sample"`` (that first sample: sharper, but it may show structure that is not in the patient).
With ``views`` V > 1 (``bundle.tta``) the N samples are spread over up to V flipped/transposed views of the input
(``bundle.tta.effective_views``: the most that divide N; N/V samples each, the guide run in each view), mapped back
before the mean: the same work as N samples of one view.
With ``estimator="x0"`` each sample stops after its first step and returns that step's estimate of the clean latent
(the denoiser's posterior mean given the noised start, ``x̂0 = (z_t − √(1−ᾱ_t)·ε̃) / √ᾱ_t``): one network call
instead of ``int(steps·strength)``; the mean over N noise draws and V views is then a smoothed posterior mean and
the std the spread of those estimates, not of samples (rectified flow: ``x̂0 = z_t + ṽ·t/T``). ``"sample"`` (default)
runs the chain to t = 0.

The pieces (the shape of a diffusers pipeline, without the dependency):

* :class:`GuidedDenoiser` — one sampling call's guided prediction ε̃(z_t, t): the network, the condition latents and
  tokens of the guidance branches, the two scales and DeepCache;
* :class:`CMRDiffPipeline` — ``pipeline(images, network) -> SynthesisOutput`` for slices: encode the conditions, the
  guide's start, the N samples spread over the views, MONAI's scheduler as it is, decode, residual, statistics. It
  keeps no per-call state: everything a call produces is in the returned :class:`SynthesisOutput`;
* :class:`CMRDiffSampler` — the MONAI ``Inferer`` of the configs: slices or field-of-view volumes in, the pipeline,
  the scanner texture on the volume's sample output, and the tensor ``synth_output`` names out. The whole
  :class:`SynthesisOutput` of its last call is ``last_output`` (replaced as a whole by every call), which the
  evaluator handler :class:`SynthesisOutputs` copies into the engine output (keys ``mean``, ``sample``, ``std``)
  for the post-processing and metrics of each batch item.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

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


@dataclass
class SynthesisOutput:
    """What one synthesis call produces, all (B, 1, H, W) for slices or (B, 1, X, Y, S) for volumes:

    - ``mean``: the mean of the N samples (N 1: the single sample);
    - ``std``: their per-pixel standard deviation (None with N 1);
    - ``sample``: the first of the N samples, the identity view's first noise draw (None with N 1: ``mean`` is then
      the single sample);
    - ``start``: the guide's SDEdit start as ``(image, latent)``: the regressor's prediction (V·B, 1, H, W) (None
      for a condition-sequence guide) and the clean start latent (V·B, lc, h, w), in the V stacked views
      (``bundle.tta.stack_views``; after a volume call: of its B·S slices at ``image_size``); None when not used
      (strength 1 without the residual).
    """

    mean: torch.Tensor
    std: torch.Tensor | None = None
    sample: torch.Tensor | None = None
    start: tuple[torch.Tensor | None, torch.Tensor] | None = None

    def chosen(self, synth_output: str) -> torch.Tensor:
        """The output ``synth_output`` names: the mean, or the first sample (with N 1 both are the single sample)."""
        return self.sample if synth_output == "sample" and self.sample is not None else self.mean

    def extras(self) -> dict[str, torch.Tensor]:
        """The outputs beside the returned one, for the engine output: ``{"mean", "sample", "std"}`` with N > 1;
        empty with N 1 (the returned output is the single sample)."""
        if self.sample is None:
            return {}
        return {"mean": self.mean, "sample": self.sample, "std": self.std}


class GuidedDenoiser:
    """The two-scale (InstructPix2Pix) guided prediction of one sampling call:
    ``denoiser(z_t, t, step)`` -> ε̃ = ε(∅,∅) + c_I1·[ε(c1,∅) − ε(∅,∅)] + c_I2·[ε(c1,c2) − ε(c1,∅)] (B·n, lc, h, w)
    (velocities for a flow model), every guidance branch in **one** batched forward pass. With c_I1 = c_I2 the
    (c1,∅) branch cancels and is not computed (2 instead of 3 predictions a step).

    - ``network``: the CMRDiff network (``context(images, keep)`` and ``unet``; a DDP wrapper is unwrapped);
      ``forward``: what runs the whole network (default ``network``; e.g. its ``torch.compile``d form);
    - ``images`` (B, 3, H, W) and ``latents`` (B, 3, lc, h, w; the target's slot zero): the conditions, repeated
      for ``n`` samples each (rows sample-minor, as the noise ``z_t`` (B·n, lc, h, w));
    - ``target``, ``conditions`` (c1, c2): slot indices; ``scales``: (c_I1, c_I2);
    - ``cache_interval`` k > 1: DeepCache (``bundle.deepcache``), the whole UNet on every k-th ``step`` only.
    The branch inputs (condition latents, condition tokens, class labels) are built once, here."""

    def __init__(self, network: nn.Module, images: torch.Tensor, latents: torch.Tensor, target: int,
                 conditions: tuple[int, int], scales: tuple[float, float], n: int = 1, cache_interval: int = 1,
                 forward: nn.Module | None = None) -> None:
        net = network.module if hasattr(network, "module") else network
        c1, c2 = conditions
        self.s1, self.s2 = float(scales[0]), float(scales[1])
        dev = images.device
        b = images.shape[0]
        lc, h, w = latents.shape[2:]
        # the guidance branches (c1,c2), (c1,∅), (∅,∅) as slot masks (k, 3); (c1,∅) only when c_I1 != c_I2
        keep = torch.zeros(3, 3, dtype=torch.bool, device=dev)
        keep[0, [c1, c2]] = True
        keep[1, c1] = True
        if self.s1 == self.s2:
            keep = keep[[0, 2]]
        self.branches = k = keep.shape[0]
        keep = keep.repeat_interleave(b * n, 0)  # (k·B·N, 3), branch-major
        lat_bn = latents.repeat_interleave(n, 0).repeat(k, 1, 1, 1, 1)  # (k·B·N, 3, lc, h, w)
        self.cond = (lat_bn * keep.view(-1, 3, 1, 1, 1)).reshape(-1, 3 * lc, h, w)
        imgs = images.repeat_interleave(n, 0).repeat(k, 1, 1, 1)
        self.context = net.context(imgs, keep)  # constant across steps: computed once
        self.labels = torch.full((k * b * n,), target, dtype=torch.long, device=dev)
        self.forward = forward if forward is not None else net
        self.cache_interval = int(cache_interval)
        self.cached = DeepCacheUNet(net.unet) if self.cache_interval > 1 else None

    def __call__(self, z: torch.Tensor, t, step: int = 0) -> torch.Tensor:
        """z_t (B·n, lc, h, w) at timestep ``t``, the ``step``-th of the call (0 first: DeepCache's first step is
        a full one) -> ε̃ (B·n, lc, h, w)."""
        k = self.branches
        tt = torch.full((k * z.shape[0],), int(t), dtype=torch.long, device=z.device)
        x_in = torch.cat([z.repeat(k, 1, 1, 1), self.cond], 1)
        if self.cached is None:
            out = self.forward(x_in, tt, context=self.context, class_labels=self.labels)
        else:
            out = self.cached(x_in, tt, context=self.context, class_labels=self.labels,
                              full=step % self.cache_interval == 0)
        if k == 2:
            e_full, e_null = out.chunk(2)
            return e_null + self.s1 * (e_full - e_null)
        e_full, e_c1, e_null = out.chunk(3)
        return e_null + self.s1 * (e_c1 - e_null) + self.s2 * (e_full - e_c1)


class CMRDiffPipeline:
    """``pipeline(images, network) -> SynthesisOutput``: condition slices (B, 3, H, W) in the canonical order C0, DE,
    T2 (the target's channel ignored) to the synthesized target in [0, 1] (module docstring: steps 1–4, views,
    samples, estimator). Its attributes are the settings only (values already checked: see :class:`CMRDiffSampler`,
    which builds it from the config's knobs); the one thing kept between calls is the ``torch.compile``d network
    (``compile``), a cache.

    - ``scheduler``: MONAI's ``DDIMScheduler`` or ``RFlowScheduler``, used as it is (``set_timesteps``,
      ``add_noise``, ``step``); ``autoencoder``, ``scale_factor``: the frozen VAE and its latent scale;
    - ``target``, ``conditions`` (c1, c2): slot indices (0 C0, 1 DE, 2 T2);
    - ``guide``: a condition slot (its latent is the start) or ``"regression"`` (``guide_network``'s prediction);
      ``residual``: with the regression guide, output ``r + dec(z) − dec(enc(r))``; ``strength``: SDEdit;
    - ``num_inference_steps``, ``guidance_scale_1``/``_2``, ``num_samples``, ``views`` (effective: divides N),
      ``seed`` (None: unseeded), ``estimator``, ``cache_interval``, ``compile``, ``progress``."""

    def __init__(self, scheduler, autoencoder: nn.Module, scale_factor: float, target: int,
                 conditions: tuple[int, int], guide: int | str, num_inference_steps: int = 50,
                 guidance_scale_1: float = 1.5, guidance_scale_2: float = 1.5, strength: float = 1.0,
                 guide_network: nn.Module | None = None, residual: bool = False, num_samples: int = 1,
                 views: int = 1, seed: int | None = 0, estimator: str = "sample", cache_interval: int = 1,
                 compile: bool = False, progress: bool = True) -> None:
        self.scheduler, self.autoencoder, self.scale_factor = scheduler, autoencoder, float(scale_factor)
        self.target, (self.c1, self.c2) = int(target), (int(conditions[0]), int(conditions[1]))
        self.guide, self.guide_network, self.residual = guide, guide_network, bool(residual)
        self.steps, self.s1, self.s2 = int(num_inference_steps), float(guidance_scale_1), float(guidance_scale_2)
        self.strength, self.num_samples, self.views = float(strength), int(num_samples), int(views)
        self.seed, self.estimator, self.cache_interval = seed, estimator, int(cache_interval)
        self.compile, self.progress = bool(compile), progress
        self._compiled: tuple[int, nn.Module] | None = None

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
    def __call__(self, images: torch.Tensor, network: nn.Module) -> SynthesisOutput:
        """images (B, 3, H, W) -> :class:`SynthesisOutput` (mean, std, first sample (B, 1, H, W), the start); std
        and the sample are None when num_samples == 1 (the mean is then the single sample). The first sample is the
        identity view's first noise draw (for the batch's first slice, with views 1, what ``num_samples`` 1 draws)."""
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"expected condition images (B, 3, H, W) in order C0, DE, T2, got {tuple(images.shape)}")
        v, b = self.views, images.shape[0]
        x, start = self.samples(stack_views(images, v), network, self.num_samples // v)  # (V·B, N/V, 1, H, W)
        x = unstack_views(x, v).transpose(0, 1).reshape(b, self.num_samples, *x.shape[2:])  # (B, N, 1, H, W)
        if self.num_samples == 1:
            return SynthesisOutput(mean=x[:, 0], start=start)
        return SynthesisOutput(mean=x.mean(1), std=x.std(1, unbiased=False), sample=x[:, 0], start=start)

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """Condition images (B, 3, H, W) -> their latents (B, 3, lc, h, w), ``mu × scale_factor``; only the
        conditions are encoded: the target's slot stays zero."""
        b = images.shape[0]
        conds = [self.c1, self.c2]
        mu = self.autoencoder.encode(images[:, conds].reshape(b * 2, 1, *images.shape[2:]))[0] * self.scale_factor
        lc, h, w = mu.shape[1:]
        lat = mu.new_zeros(b, 3, lc, h, w)
        lat[:, conds] = mu.reshape(b, 2, lc, h, w)
        return lat

    def samples(self, images: torch.Tensor, network: nn.Module, n: int
                ) -> tuple[torch.Tensor, tuple[torch.Tensor | None, torch.Tensor] | None]:
        """images (B, 3, H, W) -> (n samples (B, n, 1, H, W) in [0, 1], the guide's start (image or None, latent)
        or None when not used)."""
        dev = images.device
        b = images.shape[0]
        g = torch.Generator(device="cpu")
        if self.seed is not None:
            g.manual_seed(int(self.seed))
        lat = self.encode(images)  # (B, 3, lc, h, w)
        lc, h, w = lat.shape[2:]
        net = network.module if hasattr(network, "module") else network
        eps_of = GuidedDenoiser(net, images, lat, self.target, (self.c1, self.c2), (self.s1, self.s2), n,
                                self.cache_interval, forward=self.denoiser(net))
        noise = torch.randn((b * n, lc, h, w), generator=g).to(dev)
        ts = self.timesteps()
        start = self.guide_start(images, lat) if self.strength < 1.0 or self.residual else None
        if self.strength >= 1.0:
            z = noise
        else:
            z = self.scheduler.add_noise(start[1].repeat_interleave(n, 0), noise, ts[:1].to(dev).repeat(b * n))
        for i, t in enumerate(tqdm(ts, desc="sampling", disable=not self.progress, leave=False)):
            z, x0 = self.scheduler.step(eps_of(z, t, i), int(t), z)
            if self.estimator == "x0":  # the one-step estimate of the clean latent
                z = x0
                break
        x = self.autoencoder.decode_stage_2_outputs(z / self.scale_factor)
        x = x.reshape(b, n, *x.shape[1:])
        if self.residual:  # r + dec(z) − dec(enc(r)): the start's VAE reconstruction error cancels
            pred, latent = start
            base = self.autoencoder.decode_stage_2_outputs(latent / self.scale_factor)
            x = x + (pred - base)[:, None]
        return x.clamp(0, 1), start

    def guide_start(self, images: torch.Tensor, lat: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor]:
        """The SDEdit start before noising, ``(image, latent)``: the guide sequence's latent from ``lat``
        (B, 3, lc, h, w) with image None, or the regressor's prediction (B, 1, H, W) from condition ``images``
        (B, 3, H, W) and its VAE latent (B, lc, h, w)."""
        if self.guide != "regression":
            return None, lat[:, self.guide]
        from bundle.regression import translation_inputs

        target = torch.full((images.shape[0],), self.target, dtype=torch.long, device=images.device)
        pred = self.guide_network(translation_inputs(images.float(), target)).clamp(0, 1)  # (B, 1, H, W)
        return pred, self.autoencoder.encode(pred)[0] * self.scale_factor


def _setting(name: str) -> property:
    """A setting of the sampler's pipeline, read (and set) through the sampler."""
    return property(lambda self: getattr(self.pipeline, name), lambda self, v: setattr(self.pipeline, name, v),
                    doc=f"the pipeline's ``{name}``")


class CMRDiffSampler(Inferer):
    """The MONAI ``Inferer`` of configs/inference.yaml: checks the config's knobs, builds the
    :class:`CMRDiffPipeline` (``self.pipeline``) and adapts it to slices or field-of-view volumes
    (:meth:`__call__`). Besides the pipeline it holds ``image_size`` (volume slices are sampled at it),
    ``texture`` (a ``bundle.texture.ScannerTexture`` or None), ``synth_output`` (the output returned) and
    ``last_output``: the whole :class:`SynthesisOutput` of the last call, replaced as a whole by every call (None
    before the first and while a call runs) — read it right after the call (:class:`SynthesisOutputs` does so for
    the evaluator). The pipeline's settings (``scheduler``, ``num_samples``, ``views``, ``guide``, ...) read
    through the sampler."""

    scheduler = _setting("scheduler")
    autoencoder = _setting("autoencoder")
    scale_factor = _setting("scale_factor")
    target = _setting("target")
    guide = _setting("guide")
    guide_network = _setting("guide_network")
    residual = _setting("residual")
    num_samples = _setting("num_samples")
    views = _setting("views")
    seed = _setting("seed")
    estimator = _setting("estimator")
    progress = _setting("progress")

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
        target, c1, c2 = task_slots(task, tasks)
        seqs = ("C0", "DE", "T2")
        if is_null(guide, "default"):
            guide = None  # (the command line cannot pass None: MONAI drops None overrides, so "default" works too)
        residual = flag(residual, "residual")  # "--residual false" arrives as a string
        if guide is None:  # bSSFP where it is a condition, else T2
            guide = "C0" if target != 0 else "T2"
        if guide == "regression":
            if guide_network is None:
                raise ConfigError("guide 'regression' needs a guide_network (the regressor's weights: field `guide_weights`)")
        elif guide not in seqs or seqs.index(guide) == target:
            raise ConfigError(f"guide must be 'regression' or a condition sequence of task {task!r} (one of "
                             f"{[seqs[c1], seqs[c2]]}), got {guide!r}")
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
        if residual and guide != "regression":
            raise ConfigError("residual needs guide 'regression' (it adds the diffusion's change to the regressor's image)")
        self.pipeline = CMRDiffPipeline(
            scheduler, autoencoder, scale_factor, target, (c1, c2),
            guide="regression" if guide == "regression" else seqs.index(guide),
            num_inference_steps=int(num_inference_steps), guidance_scale_1=float(guidance_scale_1),
            guidance_scale_2=float(guidance_scale_2), strength=float(strength), guide_network=guide_network,
            residual=bool(residual), num_samples=int(num_samples), views=effective_views(views, int(num_samples)),
            seed=seed, estimator=estimator, cache_interval=int(cache_interval), compile=bool(compile),
            progress=progress)
        self.image_size, self.synth_output = image_size, synth_output
        self.texture = texture  # bundle.texture.ScannerTexture: added to the sample output(s) of volume calls only
        self.last_output: SynthesisOutput | None = None

    def __call__(self, inputs: torch.Tensor, network: nn.Module, *args, **kwargs) -> torch.Tensor:
        """Slices (B, 3, H, W) -> (B, 1, H, W); or field-of-view volumes (B, 3, X, Y, S) -> (B, 1, X, Y, S):
        every slice is resized to ``image_size`` (area), sampled in one batch and resized back (bicubic).
        Returns the mean of the N samples, or with ``synth_output="sample"`` the first sample (the same for N 1);
        with a ``texture``, volume calls add a draw of the scanner's texture to the sample (never to the mean of N).
        All outputs of the call (mean, std, sample; volumes clamped like the returned one) are in ``last_output``."""
        self.last_output = None
        out = self.synthesize(inputs, network)
        self.last_output = out
        return out.chosen(self.synth_output)

    def synthesize(self, inputs: torch.Tensor, network: nn.Module) -> SynthesisOutput:
        """Slices or volumes (see :meth:`__call__`) -> every output of the synthesis, nothing kept."""
        if inputs.ndim == 4:
            return self.pipeline(inputs, network)
        if inputs.ndim != 5 or inputs.shape[1] != 3:
            raise ValueError(f"expected (B, 3, H, W) slices or (B, 3, X, Y, S) volumes, got {tuple(inputs.shape)}")
        starts = []

        def run(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
            o = self.pipeline(x, network)
            starts.append(o.start)
            return o.mean, o.std, o.sample

        mean, std, first = map_fov_slices(run, inputs, self.image_size)
        if self.texture is not None:  # the scanner's texture on the field's sample output, never on the mean of N
            seq = ("C0", "DE", "T2")[self.target]
            g = torch.Generator().manual_seed(int(self.seed) + 1) if self.seed is not None else None
            if first is not None:
                first = self.texture.add_to_volume(first, seq, g)
            elif self.num_samples == 1:  # the output is the single sample
                mean = self.texture.add_to_volume(mean, seq, g)
        mean = mean.clamp(0, 1)
        first = first.clamp(0, 1) if first is not None else None  # bicubic resizing may over/undershoot, as the mean
        return SynthesisOutput(mean=mean, std=std.clamp_min(0) if std is not None else None, sample=first,
                               start=starts[0] if starts else None)


class SynthesisOutputs:
    """Evaluator handler (``attach(engine)``): after each forward pass (``IterationEvents.FORWARD_COMPLETED``, before
    the batch is decollated and post-processed) the outputs of ``inferer.last_output`` beside the returned one
    (:meth:`SynthesisOutput.extras`: ``mean``, ``sample``, ``std`` (B, 1, X, Y, S) with N > 1) go into
    ``engine.state.output``, so each batch item's post-processing (``bundle.io.SaveSynthesisd``) and the metrics
    (``bundle.evaluation.SynthesisMetrics``) read its own. An inferer without ``last_output`` (the baselines):
    nothing is added."""

    def __init__(self, inferer) -> None:
        self.inferer = inferer

    def attach(self, engine) -> None:
        from monai.engines.utils import IterationEvents

        engine.add_event_handler(IterationEvents.FORWARD_COMPLETED, self)

    def __call__(self, engine) -> None:
        out = getattr(self.inferer, "last_output", None)
        if out is not None and isinstance(engine.state.output, dict):
            engine.state.output.update(out.extras())


def _check(name: str, value, ok, what: str) -> None:
    try:
        good = bool(ok(value))
    except (TypeError, ValueError, OverflowError):  # e.g. int("abc") of a command-line string
        good = False
    if not good:
        raise ConfigError(f"{name} must be {what}, got {value!r}")
