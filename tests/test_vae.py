"""bundle/vae.py: the stage-1 inferers, losses, latent scale factor and the shipped autoencoder weights."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from monai.losses import PatchAdversarialLoss
from torch import nn

from bundle.vae import (
    AutoencoderKLInferer,
    PatchLogitsInferer,
    VAEReconstructionLoss,
    WarmupAdversarialLoss,
    compute_scale_factor,
)

REPO_ROOT = Path(__file__).resolve().parents[1]
SHIPPED_AE = REPO_ROOT / "models" / "autoencoder_cpu.pt"
SHIPPED_SCALE = 1.4479855


class _StubAE(nn.Module):
    """Returns fixed (recon, mu, sigma) and records its input."""

    def __init__(self, recon, mu, sigma):
        super().__init__()
        self.out, self.seen = (recon, mu, sigma), None

    def forward(self, x):
        self.seen = x
        return self.out


def test_autoencoder_inferer_kl_closed_form():
    mu = np.array([[[[0.5, -1.0]]], [[[0.0, 2.0]]]])  # (B=2, 1, 1, 2)
    sigma = np.array([[[[1.0, 2.0]]], [[[0.5, 1.0]]]])
    # KL(N(mu, sigma²) || N(0, 1)) = 0.5 (mu² + sigma² − ln sigma² − 1), summed per sample, averaged over the batch
    per_sample = (0.5 * (mu**2 + sigma**2 - np.log(sigma**2) - 1)).reshape(2, -1).sum(1)
    # by hand: sample 0: 0.125 + 0.5·(1 + 4 − ln 4 − 1); sample 1: 0.5·(0.25 − ln 0.25 − 1) + 0.5·4
    assert per_sample[0] == pytest.approx(0.125 + 0.5 * (4 - np.log(4)))
    assert per_sample[1] == pytest.approx(0.5 * (0.25 - np.log(0.25) - 1) + 2)
    recon = torch.rand(2, 1, 8, 8)
    stub = _StubAE(recon, torch.tensor(mu, dtype=torch.float32), torch.tensor(sigma, dtype=torch.float32))
    inferer = AutoencoderKLInferer()
    images = torch.rand(2, 1, 8, 8)
    out = inferer(images, stub)
    assert out is recon and stub.seen is images
    assert inferer.kl.shape == ()
    assert inferer.kl.item() == pytest.approx(per_sample.mean(), rel=1e-6)
    # standard normal posterior: KL = 0
    inferer(images, _StubAE(recon, torch.zeros(2, 4, 2, 2), torch.ones(2, 4, 2, 2)))
    assert inferer.kl.item() == pytest.approx(0.0, abs=1e-7)


def test_patch_logits_inferer_returns_last_output():
    outs = [torch.zeros(1), torch.ones(1, 1, 3, 3)]
    assert PatchLogitsInferer()(torch.rand(1, 1, 8, 8), lambda x: outs) is outs[-1]


def test_vae_reconstruction_loss():
    inferer = AutoencoderKLInferer()
    inferer.kl = torch.tensor(3.0)
    g = torch.Generator().manual_seed(0)
    recon, image = torch.rand(2, 1, 8, 8, generator=g), torch.rand(2, 1, 8, 8, generator=g)
    loss = VAEReconstructionLoss(inferer, kl_weight=0.25)(recon, image)
    assert loss.item() == pytest.approx(F.l1_loss(recon, image).item() + 0.25 * 3.0, rel=1e-6)
    # the KL of the latest inferer call is used
    inferer.kl = torch.tensor(1.0)
    assert VAEReconstructionLoss(inferer, kl_weight=0.25)(recon, image).item() == pytest.approx(
        F.l1_loss(recon, image).item() + 0.25, rel=1e-6)
    # a perceptual term is added with its weight
    perc = lambda a, b: torch.tensor(2.0)  # noqa: E731
    loss_p = VAEReconstructionLoss(inferer, kl_weight=0.25, perceptual_loss=perc, perceptual_weight=0.5)(recon, image)
    assert loss_p.item() == pytest.approx(F.l1_loss(recon, image).item() + 0.25 + 1.0, rel=1e-6)


def test_warmup_adversarial_generator_term():
    fn = WarmupAdversarialLoss(weight=0.5, warmup_iterations=2)
    adv = PatchAdversarialLoss(criterion="least_squares", reduction="mean")
    logits = torch.randn(2, 1, 4, 4, generator=torch.Generator().manual_seed(1)).requires_grad_(True)
    for i in range(2):  # warm-up: exactly 0, still part of the graph
        loss = fn(logits)
        assert loss.item() == 0.0 and loss.grad_fn is not None and loss.requires_grad
        loss.backward()
        assert (logits.grad == 0).all()
        assert int(fn.calls) == i + 1
    loss = fn(logits)
    expected = 0.5 * adv(logits, target_is_real=True, for_discriminator=False)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6) and loss.item() > 0
    assert int(fn.calls) == 3
    # the counter is checkpointed: a restored loss is past its warm-up at once
    assert "calls" in fn.state_dict() and int(fn.state_dict()["calls"]) == 3
    restored = WarmupAdversarialLoss(weight=0.5, warmup_iterations=2)
    restored.load_state_dict(fn.state_dict())
    assert restored(logits).item() == pytest.approx(expected.item(), rel=1e-6)


def test_warmup_adversarial_discriminator_term():
    fn = WarmupAdversarialLoss(weight=0.2, warmup_iterations=1, for_discriminator=True)
    adv = PatchAdversarialLoss(criterion="least_squares", reduction="mean")
    g = torch.Generator().manual_seed(2)
    real, fake = torch.randn(2, 1, 4, 4, generator=g), torch.randn(2, 1, 4, 4, generator=g)
    assert fn(real, fake).item() == 0.0
    expected = 0.2 * 0.5 * (adv(real, target_is_real=True, for_discriminator=True)
                            + adv(fake, target_is_real=False, for_discriminator=True))
    assert fn(real, fake).item() == pytest.approx(expected.item(), rel=1e-6)
    assert WarmupAdversarialLoss(weight=0.0)(real, fake).item() == 0.0  # weight 0: always off


def test_compute_scale_factor():
    class Enc(nn.Module):
        def encode(self, x):
            return x * 3 + 1, torch.ones_like(x)

    g = torch.Generator().manual_seed(3)
    batches = [{"image": torch.randn(2, 1, 4, 4, generator=g)} for _ in range(3)]
    z = torch.cat([b["image"] * 3 + 1 for b in batches])
    assert compute_scale_factor(Enc(), batches) == pytest.approx(1 / z.std().item(), rel=1e-6)
    z2 = torch.cat([b["image"] * 3 + 1 for b in batches[:2]])
    assert compute_scale_factor(Enc(), batches, max_batches=2) == pytest.approx(1 / z2.std().item(), rel=1e-6)
    with pytest.raises(ValueError, match="no batches"):
        compute_scale_factor(Enc(), [])


@pytest.mark.skipif(not SHIPPED_AE.is_file(), reason=f"shipped autoencoder weights {SHIPPED_AE} are absent")
def test_shipped_autoencoder_weights(parser):
    p = parser()  # default profile: cpu, autoencoder_path: models/autoencoder_cpu.pt
    assert Path(p.get_parsed_content("autoencoder_path")).resolve() == SHIPPED_AE
    scale = p.get_parsed_content("scale_factor")  # read from the file: resolving it loads nothing
    assert abs(scale - SHIPPED_SCALE) < 1e-5
    ae = p.get_parsed_content("autoencoder")
    fresh = {k: v.clone() for k, v in ae.state_dict().items()}
    assert p.get_parsed_content("load_autoencoder") == pytest.approx(scale)  # the explicit loading step
    assert not ae.training
    assert any(not torch.equal(fresh[k], v) for k, v in ae.state_dict().items())
    stored = torch.load(SHIPPED_AE, map_location="cpu", weights_only=True)["state_dict"]
    state = ae.state_dict()
    assert state.keys() == stored.keys()
    for k in stored:
        assert torch.equal(state[k].cpu(), stored[k]), k
    # the loaded weights are a trained autoencoder: phantom slices (FOV 256 -> 128, as in the cpu profile)
    # reconstruct closely and their scaled latents have roughly unit spread
    from bundle.phantom import make_phantom_volumes
    from bundle.transforms import normalize_fov

    vols = make_phantom_volumes((256, 256, 1), seed=0)
    x = torch.stack([normalize_fov(torch.from_numpy(vols[s][None, ..., 0].astype(np.float32))) for s in
                     ("C0", "DE", "T2")])  # (3, 1, 256, 256)
    x = F.interpolate(x, size=(128, 128), mode="area")
    ae.eval()
    with torch.no_grad():
        recon, mu, _ = ae(x)
    assert mu.shape == (3, 8, 32, 32)
    assert F.l1_loss(recon, x).item() < 0.1
    assert 0.6 < (mu * scale).std().item() < 1.5
