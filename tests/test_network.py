"""bundle/network.py: CMRDiffNet (DiffusionModelUNet + condition encoder) from the tiny profile."""

from __future__ import annotations

import pytest
import torch

from bundle.network import CMRDiffNet

LC, H, IMG, T, D = 4, 16, 64, 4, 16  # tiny profile: latent 4x16x16, 4 tokens of width 16 per condition
B = 2


@pytest.fixture(scope="module")
def net(parser) -> CMRDiffNet:
    torch.manual_seed(0)
    net = parser(profile="tiny").get_parsed_content("network_def").eval()
    with torch.no_grad():
        # MONAI zero-initialises the attention output projections (and the null tokens start at zero), so a
        # fresh net ignores its context: randomise every all-zero parameter to make the context observable
        for p in net.parameters():
            if not p.any():
                p.normal_(std=0.1)
    return net


@pytest.fixture
def inputs():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(B, 4 * LC, H, H, generator=g)
    t = torch.tensor([10, 900])
    labels = torch.tensor([1, 2])
    images = torch.rand(B, 3, IMG, IMG, generator=g)
    keep = torch.tensor([[True, False, True], [True, True, False]])
    return x, t, labels, images, keep


def test_tiny_profile_network(net):
    assert isinstance(net, CMRDiffNet)
    assert net.unet.in_channels == 4 * LC and net.unet.out_channels == LC
    assert net.unet.num_class_embeds == 3


@torch.no_grad()
def test_forward_with_images(net, inputs):
    x, t, labels, images, keep = inputs
    out = net(x, t, class_labels=labels, images=images, keep=keep)
    assert out.shape == (B, LC, H, H) and torch.isfinite(out).all()
    ctx = net.context(images, keep)
    assert ctx.shape == (B, 3 * T, D)
    torch.testing.assert_close(net(x, t, context=ctx, class_labels=labels), out)


@torch.no_grad()
def test_forward_with_context(net, inputs):
    x, t, labels, _, _ = inputs
    ctx = torch.randn(B, 3 * T, D, generator=torch.Generator().manual_seed(2))
    out = net(x, t, context=ctx, class_labels=labels)
    assert out.shape == (B, LC, H, H)
    # the context is used
    assert not torch.allclose(out, net(x, t, context=ctx * 0, class_labels=labels))


@torch.no_grad()
def test_forward_without_conditions_uses_null_context(net, inputs):
    x, t, labels, images, keep = inputs
    out = net(x, t, class_labels=labels)
    assert out.shape == (B, LC, H, H)
    torch.testing.assert_close(out, net(x, t, context=net.encoder.null(B), class_labels=labels))
    assert not torch.allclose(out, net(x, t, class_labels=labels, images=images, keep=keep))
    # the class label is used
    assert not torch.allclose(out, net(x, t, class_labels=torch.tensor([0, 0])))


def test_missing_class_labels_raises(net, inputs):
    x, t, _, images, keep = inputs
    with pytest.raises(ValueError, match="class-conditional: pass class_labels"):
        net(x, t, images=images, keep=keep)


def test_backward_reaches_encoder(net, inputs):
    x, t, labels, images, keep = inputs
    net.zero_grad()
    net(x, t, class_labels=labels, images=images, keep=keep).pow(2).mean().backward()
    assert net.encoder.stem[0].weight.grad is not None and net.encoder.stem[0].weight.grad.abs().sum() > 0
    net.zero_grad()


def test_full_profile_networks_build_and_run(parser):
    """The 256x256 GPU profile is declared with the same code: its networks build and give the right shapes."""
    p = parser(profile="full")
    ae, net = p.get_parsed_content("autoencoder_def").eval(), p.get_parsed_content("network_def").eval()
    with torch.no_grad():
        z = ae.encode(torch.rand(1, 1, 256, 256))[0]
        assert tuple(z.shape) == (1, 4, 64, 64)
        out = net(torch.randn(1, 16, 64, 64), torch.tensor([10]), class_labels=torch.tensor([1]),
                  images=torch.rand(1, 3, 256, 256), keep=torch.tensor([[True, False, True]]))
    assert tuple(out.shape) == (1, 4, 64, 64)
