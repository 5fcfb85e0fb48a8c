"""bundle/conditioning.py: patch and CLIP condition encoders with per-slot null tokens."""

from __future__ import annotations

import pytest
import torch

from bundle.conditioning import CLIPConditionEncoder, PatchConditionEncoder

D, T, IMG = 16, 4, 32
CLIP_CONFIG = dict(hidden_size=32, intermediate_size=37, num_hidden_layers=1, num_attention_heads=2, image_size=32,
                   patch_size=8, num_channels=3)


def _patch_encoder() -> PatchConditionEncoder:
    torch.manual_seed(0)
    enc = PatchConditionEncoder(context_dim=D, tokens_per_condition=T, hidden=8).eval()
    with torch.no_grad():  # null tokens start at zero: make them distinguishable from anything else
        enc.null_tokens.normal_()
    return enc


def _images(b: int, seed: int = 0) -> torch.Tensor:
    return torch.rand(b, 3, IMG, IMG, generator=torch.Generator().manual_seed(seed))


def _slot(out: torch.Tensor, s: int) -> torch.Tensor:
    return out[:, s * T : (s + 1) * T]


def test_patch_output_shape():
    enc = _patch_encoder()
    out = enc(_images(2), torch.ones(2, 3, dtype=torch.bool))
    assert out.shape == (2, 3 * T, D)
    assert torch.isfinite(out).all()


def test_patch_dropped_slots_are_null_tokens():
    enc = _patch_encoder()
    keep = torch.tensor([[True, False, True], [False, False, True]])
    out = enc(_images(2), keep)
    for i in range(2):
        for s in range(3):
            if keep[i, s]:
                assert not torch.allclose(_slot(out, s)[i], enc.null_tokens[s])
            else:
                assert torch.equal(_slot(out, s)[i], enc.null_tokens[s])


def test_patch_no_leakage_from_dropped_slots():
    enc = _patch_encoder()
    keep = torch.tensor([[True, False, True], [True, True, False]])
    images = _images(2)
    out = enc(images, keep)
    changed = images.clone()
    changed[0, 1] = torch.rand(IMG, IMG)  # dropped slot of sample 0
    changed[1, 2] = 5.0  # dropped slot of sample 1
    assert torch.equal(enc(changed, keep), out)
    # while changing a kept slot does change the output (the test can see a leak)
    changed[0, 0] = torch.rand(IMG, IMG)
    assert not torch.equal(enc(changed, keep), out)
    # and samples do not leak into each other
    assert torch.equal(enc(changed, keep)[1], out[1])


def test_patch_no_gradient_through_dropped_images():
    enc = _patch_encoder()
    images = _images(1).requires_grad_(True)
    enc(images, torch.tensor([[True, False, False]])).sum().backward()
    assert images.grad[0, 0].abs().sum() > 0
    assert (images.grad[0, 1:] == 0).all()


def test_patch_slot_embeddings_tell_slots_apart():
    enc = _patch_encoder()
    same = _images(1)[:, :1].expand(-1, 3, -1, -1)  # one image in all three slots
    out = enc(same, torch.ones(1, 3, dtype=torch.bool))[0]
    tokens = enc._tokens(same[:, :1])[0]  # (T, D) without slot embedding
    for s in range(3):
        torch.testing.assert_close(_slot(out[None], s)[0], tokens + enc.slot_embedding[s])
    assert not torch.allclose(_slot(out[None], 0), _slot(out[None], 1))


def test_patch_non_square_tokens_raises():
    with pytest.raises(ValueError, match="square"):
        PatchConditionEncoder(context_dim=D, tokens_per_condition=5)


def test_null_shape_and_value():
    enc = _patch_encoder()
    null = enc.null(3)
    assert null.shape == (3, 3 * T, D)
    for s in range(3):
        assert torch.equal(_slot(null, s), enc.null_tokens[s].expand(3, -1, -1))
    # equals encoding with nothing kept
    assert torch.equal(enc(_images(3), torch.zeros(3, 3, dtype=torch.bool)), null)


# ----------------------------------------------------------------------------------------------------- CLIP
def test_clip_shape_and_frozen():
    torch.manual_seed(0)
    enc = CLIPConditionEncoder(config=CLIP_CONFIG, context_dim=D, tokens_per_condition=T).eval()
    with torch.no_grad():
        enc.null_tokens.normal_()
    keep = torch.tensor([[True, False, True], [False, True, True]])
    out = enc(_images(2), keep)
    assert out.shape == (2, 3 * T, D)
    assert torch.isfinite(out).all()
    assert torch.equal(_slot(out, 1)[0], enc.null_tokens[1])
    clip_params = list(enc.clip.parameters())
    assert clip_params and not any(p.requires_grad for p in clip_params)
    assert all(p.requires_grad for p in enc.proj.parameters())
    assert enc.null_tokens.requires_grad and enc.slot_embedding.requires_grad
    trainable = CLIPConditionEncoder(config=CLIP_CONFIG, context_dim=D, tokens_per_condition=T, trainable=True)
    assert all(p.requires_grad for p in trainable.clip.parameters())


def test_clip_missing_weights_dir(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a folder"):
        CLIPConditionEncoder(weights_dir=str(tmp_path / "no_such_clip"))


def test_clip_needs_weights_or_config():
    with pytest.raises(ValueError, match="weights_dir"):
        CLIPConditionEncoder()


def test_clip_save_load_round_trip(tmp_path):
    from transformers import CLIPVisionConfig, CLIPVisionModel

    torch.manual_seed(1)
    model = CLIPVisionModel(CLIPVisionConfig(**CLIP_CONFIG))
    model.save_pretrained(tmp_path / "clip")
    enc = CLIPConditionEncoder(weights_dir=str(tmp_path / "clip"), context_dim=D, tokens_per_condition=T).eval()
    assert enc.size == CLIP_CONFIG["image_size"]
    ref, got = model.state_dict(), enc.clip.state_dict()
    assert ref.keys() == got.keys()
    for k in ref:
        assert torch.equal(ref[k], got[k]), k
    out = enc(_images(1), torch.tensor([[False, True, True]]))
    assert out.shape == (1, 3 * T, D)
    assert not any(p.requires_grad for p in enc.clip.parameters())
