"""Behaviour a stub denoiser fails (issue 31.4): the real sampler (configs/common.yaml + configs/inference.yaml) with
the SHIPPED cpu weights (models/diffusion_cpu_any.pt, autoencoder_cpu.pt, guide_cpu_any.pt) on a 2-slice phantom
case (``bundle/phantom.py``), lge, the kept first sample of N 2 (``synth_output: sample``, views 1).

Two checks on that sample x, against the guide regressor's image r (the guide-only start) and the noised start z_t
decoded through the same residual path (``r + dec(z_t) − dec(enc(r))``, what the chain would give if the denoiser
changed nothing):

* moved: the sample differs from r by a meaningful margin (mean |x − r| >= MOVED_MIN);
* denoised: x − r has far less power above 1/16 cycles/pixel (the band of the latent noise once decoded: a latent
  pixel is 4 image pixels, the latent's Nyquist 1/8) than the decoded noised start's: ratio <= HF_RATIO_MAX.

Two stub denoisers, whose predictions are solved from the DDIM update so that each step returns (a) the noised start
unchanged or (b) the clean start (the guide's latent) exactly, each fail one check; the tests show that they do.

Settings: strength 0.5 with 10 steps (5 DDIM steps). At the default strength 0.2 the start's noise is small (decoded,
its power above 1/16 cycles/pixel is only ~1.6x the sample's), too close to tell a denoiser from the identity.
Measured on this case (real denoiser; shipped weights v0.15.0): moved 0.055 (stub b: 0), HF ratio 0.36 (stub a: 1);
at strength 0.75 the ratio is 0.26, for t2 0.56 and bssfp 0.41 at 0.5.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

pytestmark = pytest.mark.slow  # ~10 s on 2 busy cores (the shipped networks, 3 syntheses of 2 slices)

REPO_ROOT = Path(__file__).resolve().parents[1]
TASK = "lge"
MOVED_MIN = 0.02      # [0, 1] units; real 0.055, stub (b) 0
HF_RATIO_MAX = 0.5    # real 0.36, stub (a) 1
HF_CUTOFF = 1 / 16    # cycles / pixel


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """(sampler, network, condition slices (S, 3, 128, 128)) with the shipped weights loaded."""
    from monai.bundle import ConfigParser

    from bundle.phantom import write_phantom_case
    from bundle.weights import load_diffusion

    tmp = tmp_path_factory.mktemp("sample_change")
    files = write_phantom_case(tmp / "phantom", "myops_test_203", shape=(288, 272, 2))
    p = ConfigParser()
    p.read_config([str(REPO_ROOT / "configs" / "common.yaml"), str(REPO_ROOT / "configs" / "inference.yaml")])
    knobs = dict(bundle_root=str(REPO_ROOT), output_dir=str(tmp / "out"), device="$torch.device('cpu')", profile="cpu",
                 task=TASK, num_inference_steps=10, strength=0.5, num_samples=2, views=1, cache_interval=1,
                 synth_output="sample", input_files={s: str(files[s]) for s in ("C0", "DE", "T2")})
    for k, v in knobs.items():
        p[k] = v
    p.get_parsed_content("load_autoencoder")  # the workflow's explicit loading steps
    p.get_parsed_content("load_guide")
    net = p.get_parsed_content("network")
    load_diffusion(p.get_parsed_content("diffusion_weights"), net, p.get_parsed_content("diffusion_arch"), TASK,
                   p.get_parsed_content("scale_factor"))
    net.eval()
    sampler = p.get_parsed_content("inferer")
    sampler.progress = False
    item = p.get_parsed_content("volume_transforms")(dict(case="c", **knobs["input_files"]))
    fov = torch.as_tensor(item["image"]).float().permute(3, 0, 1, 2)  # (S, 3, 256, 256)
    size = p.get_parsed_content("image_size")
    return sampler, net, F.interpolate(fov, size=(size, size), mode="area")


class StubDenoiser(nn.Module):
    """A stand-in denoiser (the real network's condition tokens, its own prediction): the ε that makes the DDIM step
    from z_t land on ``goal`` — ``"noised"``: z_t itself (every step returns its input: the chain ends at the noised
    start), ``"clean"``: the sampler's clean start latent (the guide's, repeated like the samples: what the sampler
    handed to the scheduler's ``add_noise``, recorded in ``starts``). From
    z_t = √ᾱ_t·x̂0 + √(1−ᾱ_t)·ε and goal = √ᾱ_prev·x̂0 + √(1−ᾱ_prev)·ε (the scheduler's own ᾱ and previous step)."""

    def __init__(self, real: nn.Module, sampler, goal: str) -> None:
        super().__init__()
        self.real, self.sampler, self.goal = real, sampler, goal
        self.starts: list[torch.Tensor] = []  # the clean start latents (B·n, lc, h, w) given to add_noise

    def context(self, images: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        return self.real.context(images, keep)

    def forward(self, x: torch.Tensor, t: torch.Tensor, context=None, class_labels=None) -> torch.Tensor:
        """x (k·B·n, 4·lc, h, w): [z_t, condition latents], branch-major -> ε (k·B·n, lc, h, w), the same in every
        guidance branch (so the guided ε̃ is this ε whatever the scales)."""
        s = self.sampler.scheduler
        z = x[:, : x.shape[1] // 4]
        ti = int(t[0])
        prev = ti - s.num_train_timesteps // s.num_inference_steps
        a = s.alphas_cumprod[ti].double()
        p = (s.alphas_cumprod[prev] if prev >= 0 else s.final_alpha_cumprod).double()
        if self.goal == "noised":
            goal = z
        else:
            start = self.starts[-1]  # (B·n, lc, h, w), the samples' rows
            goal = start.repeat(z.shape[0] // start.shape[0], 1, 1, 1)
        det = a.sqrt() * (1 - p).sqrt() - (1 - a).sqrt() * p.sqrt()
        return ((a.sqrt() * goal.double() - p.sqrt() * z.double()) / det).float()


def hf_power(x: torch.Tensor, cutoff: float = HF_CUTOFF) -> float:
    """Mean power spectrum of x (..., H, W) above ``cutoff`` cycles/pixel (radial), per pixel."""
    f = torch.fft.fft2(x.double())
    fy, fx = torch.fft.fftfreq(x.shape[-2]).view(-1, 1), torch.fft.fftfreq(x.shape[-1]).view(1, -1)
    band = (fy**2 + fx**2).sqrt() > cutoff
    return float((f.abs() ** 2)[..., band].mean() / (x.shape[-2] * x.shape[-1]))


@torch.inference_mode()
def synthesize(setup, network: nn.Module, monkeypatch) -> dict[str, torch.Tensor]:
    """One sample (the kept first of N 2) of every slice, the guide's image and the decoded noised start, each
    (S, 1, H, W)."""
    sampler, _, x = setup
    starts: list[torch.Tensor] = []
    add_noise = sampler.scheduler.add_noise
    def recording(original, *args, **kwargs) -> torch.Tensor:  # the noised start z_t (B·n, lc, h, w), whatever the network
        if isinstance(network, StubDenoiser):
            network.starts.append(original)  # the clean start, for the stub
        starts.append(add_noise(original, *args, **kwargs))
        return starts[-1]

    monkeypatch.setattr(sampler.scheduler, "add_noise", recording)
    sample = sampler(x, network)
    out = sampler.last_output
    assert sample is out.sample and len(starts) == 1
    guide, start = out.start  # (S, 1, H, W) the regressor's image, (S, lc, h, w) its latent
    n = sampler.num_samples // sampler.views
    decode = sampler.autoencoder.decode_stage_2_outputs
    z_t = starts[0][::n]  # the first sample's noised start of every slice
    noised = (guide + decode(z_t / sampler.scale_factor) - decode(start / sampler.scale_factor)).clamp(0, 1)
    return {"sample": sample, "guide": guide, "noised": noised}


def check(out: dict[str, torch.Tensor]) -> dict[str, float]:
    """Assert what a real denoiser's sample does and a stub's does not; returns the measured values."""
    moved = float((out["sample"] - out["guide"]).abs().mean())
    ratio = hf_power(out["sample"] - out["guide"]) / hf_power(out["noised"] - out["guide"])
    assert moved >= MOVED_MIN, f"moved: the sample is the guide-only start (mean |x - r| {moved:.4f} < {MOVED_MIN})"
    assert ratio <= HF_RATIO_MAX, (f"denoised: the sample keeps the start's noise (power above {HF_CUTOFF:.3f} "
                                   f"cycles/pixel {ratio:.2f} x the decoded noised start's > {HF_RATIO_MAX})")
    return {"moved": moved, "hf_ratio": ratio}


def test_real_denoiser_moves_the_start_and_removes_its_noise(setup, monkeypatch):
    sampler, net, _ = setup
    out = synthesize(setup, net, monkeypatch)
    assert out["sample"].shape == (2, 1, 128, 128) and sampler.last_output.mean is not None
    print("real denoiser:", check(out))


@pytest.mark.parametrize("goal,fails", [("noised", "denoised"), ("clean", "moved")])
def test_stub_denoisers_fail_the_check(setup, monkeypatch, goal, fails):
    """The stubs do what they are built for (the chain ends at the noised start, or at the clean start: the output
    is then the guide's image itself), and each fails its half of :func:`check`."""
    sampler, net, _ = setup
    out = synthesize(setup, StubDenoiser(net, sampler, goal), monkeypatch)
    target = out["noised"] if goal == "noised" else out["guide"]
    torch.testing.assert_close(out["sample"], target, rtol=0, atol=1e-4)
    with pytest.raises(AssertionError, match=fails):
        check(out)
