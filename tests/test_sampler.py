"""CMRDiffSampler on tiny random networks: shapes, determinism, the DDIM/guidance identities, SDEdit step
counting, the uncertainty output, the first sample kept beside the mean (synth_output) and knob validation."""

from __future__ import annotations

import shutil

import pytest
import torch
from torch import nn

from bundle.sampler import CMRDiffSampler

SCALE = 0.7
STEPS = 4


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny convolutions are dominated by thread synchronisation: one intra-op thread is ~100x faster on a
    busy 2-core machine."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def tiny(parser, one_thread):
    """(network, autoencoder, parser) built from the tiny profile, with every weight perturbed: MONAI zero-inits
    the UNet's output convolution (and the null tokens are zeros), so an untouched network would predict 0 for
    every branch and the guidance tests could not fail."""
    p = parser(profile="tiny", device="cpu")
    torch.manual_seed(1234)
    net, ae = p.get_parsed_content("network_def"), p.get_parsed_content("autoencoder_def")
    with torch.no_grad():
        for m in (net, ae):
            for prm in m.parameters():
                prm.add_(torch.randn_like(prm) * 0.05)
    return net.eval(), ae.eval(), p


def _scheduler(p):
    return p.get_parsed_content("ddim_scheduler")  # the sampler's scheduler, in configs/common.yaml


def _sampler(tiny, **kw) -> CMRDiffSampler:
    _, ae, p = tiny
    args = dict(scheduler=_scheduler(p), autoencoder=ae, scale_factor=SCALE, task="lge",
                tasks=p.get_parsed_content("tasks"), num_inference_steps=STEPS, seed=0, progress=False,
                image_size=p.get_parsed_content("image_size"))
    args.update(kw)
    return CMRDiffSampler(**args)


def _images(b=2, h=64, w=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand((b, 3, h, w), generator=g)


@torch.no_grad()
def _reference(tiny, images, task, steps, s1, s2, seed, only_full=False):
    """Independent DDIM loop from pure noise drawn with the same generator; each branch a separate forward.
    ``only_full``: use ε(c1, c2) alone (what c_I1 = c_I2 = 1 must reduce to)."""
    net, ae, p = tiny
    sched = _scheduler(p)
    seqs = ("C0", "DE", "T2")
    spec = p.get_parsed_content("tasks")[task]
    tgt, c1, c2 = seqs.index(spec["target"]), *(seqs.index(c) for c in spec["conditions"])
    b = images.shape[0]
    lat = torch.stack([ae.encode(images[:, i : i + 1])[0] * SCALE for i in range(3)], 1)  # (B, 3, lc, h, w)
    lc, h, w = lat.shape[2:]
    g = torch.Generator().manual_seed(seed)
    z = torch.randn((b, lc, h, w), generator=g)
    labels = torch.full((b,), tgt, dtype=torch.long)

    def eps(z, t, kept):
        keep = torch.zeros(b, 3, dtype=torch.bool)
        keep[:, kept] = True
        cond = (lat * keep.view(b, 3, 1, 1, 1).float()).reshape(b, 3 * lc, h, w)
        tt = torch.full((b,), int(t), dtype=torch.long)
        return net(torch.cat([z, cond], 1), tt, context=net.context(images, keep), class_labels=labels)

    sched.set_timesteps(steps)
    for t in sched.timesteps:
        e_full = eps(z, t, [c1, c2])
        if only_full:
            e = e_full
        else:
            e_c1, e_null = eps(z, t, [c1]), eps(z, t, [])
            e = e_null + s1 * (e_c1 - e_null) + s2 * (e_full - e_c1)
        z, _ = sched.step(e, int(t), z)
    return ae.decode_stage_2_outputs(z / SCALE).clamp(0, 1)


def test_branches_differ(tiny):
    """Sanity check of the fixture: the three guidance branches give different predictions."""
    net, _, _ = tiny
    x = torch.randn(3, 16, 16, 16)
    keep = torch.tensor([[True, False, True], [True, False, False], [False, False, False]])
    with torch.no_grad():
        out = net(x, torch.full((3,), 500), context=net.context(_images(3), keep),
                  class_labels=torch.ones(3, dtype=torch.long))
    assert out.abs().mean() > 1e-3
    assert (out[0] - out[1]).abs().max() > 1e-4 and (out[1] - out[2]).abs().max() > 1e-4


def test_slice_shape(tiny):
    out = _sampler(tiny)(_images(2), tiny[0])
    assert out.shape == (2, 1, 64, 64)
    assert out.dtype == torch.float32 and out.min() >= 0 and out.max() <= 1


def test_volume_shape(tiny):
    s = _sampler(tiny)
    out = s(torch.rand(1, 3, 64, 64, 3), tiny[0])
    assert out.shape == (1, 1, 64, 64, 3)
    assert s.last_output.std is None and s.last_output.sample is None


def test_volume_resized_back(tiny):
    """A 128x128 volume is sampled at image_size 64 and returned at 128x128."""
    calls = []
    h = tiny[0].register_forward_hook(lambda m, a, o: calls.append(tuple(a[0].shape)))
    try:
        out = _sampler(tiny, num_inference_steps=1)(torch.rand(1, 3, 128, 128, 2), tiny[0])
    finally:
        h.remove()
    assert out.shape == (1, 1, 128, 128, 2)
    assert out.min() >= 0 and out.max() <= 1
    assert calls and calls[0][-2:] == (16, 16)  # latent of a 64x64 slice: sampled at image_size


def test_same_seed_identical(tiny):
    x = _images(2)
    a = _sampler(tiny, seed=3)(x, tiny[0])
    b = _sampler(tiny, seed=3)(x, tiny[0])
    assert torch.equal(a, b)
    c = _sampler(tiny, seed=4)(x, tiny[0])
    assert not torch.allclose(a, c, atol=1e-4)


@pytest.mark.slow
@pytest.mark.skipif(not any(map(shutil.which, ("g++", "c++", "clang++"))),
                    reason="torch.compile on CPU needs a C++ compiler")
def test_compiled_denoiser_gives_the_same_synthesis(tiny):
    """compile=True (torch.compile with frozen weights) is a speed option only: same output as eager."""
    x = _images(1)
    eager = _sampler(tiny, seed=5)(x, tiny[0])
    s = _sampler(tiny, seed=5, compile=True)
    assert s.pipeline.denoiser(tiny[0]) is not tiny[0] and s.pipeline.denoiser(tiny[0]) is s.pipeline.denoiser(tiny[0])
    torch.testing.assert_close(s(x, tiny[0]), eager, atol=1e-4, rtol=1e-4)
    assert _sampler(tiny).pipeline.denoiser(tiny[0]) is tiny[0]


def test_strength_one_is_pure_noise_ddim(tiny):
    """strength=1 starts from the same N(0, I) noise (same generator) as a plain guided DDIM loop."""
    x = _images(2, seed=1)
    out = _sampler(tiny, strength=1.0, seed=7, guidance_scale_1=1.5, guidance_scale_2=2.0)(x, tiny[0])
    ref = _reference(tiny, x, "lge", STEPS, 1.5, 2.0, seed=7)
    assert torch.allclose(out, ref, atol=1e-4), (out - ref).abs().max()
    other = _reference(tiny, x, "lge", STEPS, 1.5, 2.0, seed=8)
    assert not torch.allclose(out, other, atol=1e-4)


@pytest.mark.parametrize("task", ["lge", "t2", "bssfp"])
def test_unit_guidance_is_conditional_prediction(tiny, task):
    """c_I1 = c_I2 = 1: ε̃ = ε(c1, c2) exactly (up to float rounding)."""
    x = _images(2, seed=2)
    out = _sampler(tiny, task=task, guidance_scale_1=1.0, guidance_scale_2=1.0, seed=5)(x, tiny[0])
    ref = _reference(tiny, x, task, STEPS, 1.0, 1.0, seed=5, only_full=True)
    assert torch.allclose(out, ref, atol=1e-4), (out - ref).abs().max()
    # and it is not what other scales give (the test can tell the branches apart)
    guided = _reference(tiny, x, task, STEPS, 3.0, 0.0, seed=5)
    assert not torch.allclose(out, guided, atol=1e-3)


@pytest.mark.parametrize("steps,strength,expected,scales,rows", [
    (10, 1.0, 10, (1.5, 2.0), 3), (10, 0.45, 4, (1.5, 2.0), 3), (8, 0.5, 4, (2.0, 2.0), 2), (10, 0.05, 1, (2.0, 2.0), 2)])
def test_strength_runs_fewer_steps(tiny, steps, strength, expected, scales, rows):
    """One batched forward per step (3·B rows; 2·B when c_I1 = c_I2, the (c1,∅) branch cancels),
    int(steps·strength) steps: the last ones of the schedule."""
    net = tiny[0]
    b = 2
    calls = []
    h = net.register_forward_hook(lambda m, a, o: calls.append((a[0].shape[0], a[1].clone())))
    try:
        s = _sampler(tiny, num_inference_steps=steps, strength=strength, guidance_scale_1=scales[0],
                     guidance_scale_2=scales[1])
        out = s(_images(b), net)
    finally:
        h.remove()
    assert out.shape == (b, 1, 64, 64)
    assert len(calls) == expected
    assert all(n == rows * b for n, _ in calls)
    sched = _scheduler(tiny[2])
    sched.set_timesteps(steps)
    ran = [int(t[0]) for _, t in calls]
    assert ran == [int(t) for t in sched.timesteps[steps - expected :]]


def test_equal_scales_skip_the_cancelled_branch(tiny):
    """c_I1 = c_I2 = 2.5 on two branches equals the three-branch formula computed separately."""
    x = _images(2, seed=4)
    out = _sampler(tiny, strength=1.0, seed=3, guidance_scale_1=2.5, guidance_scale_2=2.5)(x, tiny[0])
    ref = _reference(tiny, x, "lge", STEPS, 2.5, 2.5, seed=3)
    assert torch.allclose(out, ref, atol=1e-4), (out - ref).abs().max()


class _ConstantRegressor(torch.nn.Module):
    """A stand-in image-space regressor: predicts ``value`` everywhere and records its inputs."""

    def __init__(self, value: float) -> None:
        super().__init__()
        self.value, self.inputs = value, []

    def forward(self, x):
        self.inputs.append(x)
        return torch.full_like(x[:, :1], self.value)


def test_regression_guide_starts_from_the_regressor(tiny):
    """guide='regression': the start is the VAE latent of the regressor's prediction (given the conditions and the
    target one-hot); a different prediction gives a different synthesis, and the result equals an explicit start."""
    x = _images(2, seed=6)
    reg_a, reg_b = _ConstantRegressor(0.2), _ConstantRegressor(0.8)
    kw = dict(strength=0.5, guide="regression", guidance_scale_1=0, guidance_scale_2=0)
    a = _sampler(tiny, guide_network=reg_a, **kw)(x, tiny[0])
    b = _sampler(tiny, guide_network=reg_b, **kw)(x, tiny[0])
    assert not torch.allclose(a, b, atol=1e-4)
    inp = reg_a.inputs[0]
    assert inp.shape == (2, 6, 64, 64) and (inp[:, 1] == 0).all() and (inp[:, 4] == 1).all()  # lge: DE zeroed
    s = _sampler(tiny, guide_network=reg_a, **kw)
    _, ae, _ = tiny
    lat = torch.zeros(2, 3, 1, 1, 1)
    assert torch.allclose(s.pipeline.guide_start(x, lat)[1], ae.encode(torch.full((2, 1, 64, 64), 0.2))[0] * SCALE, atol=1e-6)
    with pytest.raises(ValueError, match="guide_network"):
        _sampler(tiny, guide="regression")


def test_strength_below_one_starts_from_guide(tiny):
    """strength < 1 depends on the guide sequence's latent; strength 1 does not."""
    x = _images(1, seed=3)
    y = x.clone()
    y[:, 0] = torch.rand_like(y[:, 0])  # change C0, the default guide of lge (and a condition)
    z = x.clone()
    z[:, 2] = torch.rand_like(z[:, 2])  # change T2 instead
    a = _sampler(tiny, strength=0.5, guide="T2", guidance_scale_1=0, guidance_scale_2=0)
    # with both scales 0 only ε(∅,∅) is used: the conditions' latents do not matter, the guide does
    assert torch.allclose(a(x, tiny[0]), a(y, tiny[0]), atol=1e-5)
    assert not torch.allclose(a(x, tiny[0]), a(z, tiny[0]), atol=1e-4)


def test_num_samples_uncertainty(tiny):
    s = _sampler(tiny, num_samples=3)
    out = s(_images(2), tiny[0])
    assert out.shape == (2, 1, 64, 64)
    std = s.last_output.std
    assert std is not None and std.shape == (2, 1, 64, 64)
    assert (std >= 0).all() and std.max() > 0
    vol = s(torch.rand(1, 3, 128, 128, 2), tiny[0])
    assert vol.shape == (1, 1, 128, 128, 2)
    assert s.last_output.std.shape == (1, 1, 128, 128, 2) and (s.last_output.std >= 0).all()
    single = _sampler(tiny, num_samples=1)
    single(_images(2), tiny[0])
    assert single.last_output.std is None


def _fake_samples(imgs: torch.Tensor, net, n: int) -> tuple[torch.Tensor, None]:
    """Stand-in for ``CMRDiffPipeline.samples``: sample j of slice i is C0 + 0.1·j + 0.01·i, (B, n, 1, H, W); no
    guide start."""
    j = torch.arange(n, dtype=imgs.dtype).view(1, n, 1, 1, 1)
    i = torch.arange(imgs.shape[0], dtype=imgs.dtype).view(-1, 1, 1, 1, 1)
    return (imgs[:, None, :1] * 0.5 + 0.1 * j + 0.01 * i).expand(-1, n, -1, -1, -1), None


def test_first_sample_is_kept_beside_the_mean_and_std(tiny):
    """N 4 (views 1): the output is the mean (synth_output mean, the default) or the first of the N samples
    (synth_output sample); all three outputs of the call are in last_output (mean, sample, std), and the same for
    volumes (resized back, clamped); the std is unchanged by the choice."""
    x = _images(2, seed=10)
    first = x[:, :1] * 0.5 + 0.01 * torch.arange(2.0).view(-1, 1, 1, 1)  # slice i's samples: + 0.01·i
    mean = first + 0.15  # samples + 0.1·j, j = 0..3: the first j = 0, the mean j = 1.5
    outs = {}
    for choice in ("mean", "sample"):
        s = _sampler(tiny, num_samples=4, views=1, synth_output=choice)
        s.pipeline.samples = _fake_samples
        outs[choice] = s(x, tiny[0])
        o = s.last_output
        torch.testing.assert_close(o.mean, mean)
        torch.testing.assert_close(o.sample, first)
        torch.testing.assert_close(o.std, torch.full_like(mean, 0.05 * 5 ** 0.5))  # std of 0, .1, .2, .3
        vol = torch.rand(1, 3, 128, 128, 2)
        out_v = s(vol, tiny[0])
        v = s.last_output
        assert v is not o and v.mean.shape == v.sample.shape == v.std.shape == (1, 1, 128, 128, 2)
        assert v.mean.min() >= 0 and v.mean.max() <= 1
        assert v.sample.min() >= 0 and v.sample.max() <= 1
        assert out_v is (v.mean if choice == "mean" else v.sample)
        assert v.extras().keys() == {"mean", "sample", "std"}
        torch.testing.assert_close(v.mean - v.sample, torch.full_like(out_v, 0.15), atol=1e-5,
                                   rtol=0)  # the slice offsets 0.01·i cancel; (before clamping: x/2 + 0.15 < 1)
    torch.testing.assert_close(outs["mean"], mean)
    torch.testing.assert_close(outs["sample"], first)


def test_single_sample_keeps_no_second_output(tiny):
    """N 1: the output is the single sample whatever synth_output says; no second output (sample) and no std."""
    x = _images(1, seed=11)
    out = {}
    for choice in ("mean", "sample"):
        s = _sampler(tiny, num_samples=1, synth_output=choice)
        out[choice] = s(x, tiny[0])
        assert s.last_output.mean is out[choice] and s.last_output.sample is None and s.last_output.std is None
        assert s.last_output.extras() == {}
        vol = s(torch.rand(1, 3, 64, 64, 2), tiny[0])
        assert s.last_output.mean is vol and s.last_output.sample is None and s.last_output.std is None
        assert s.last_output.extras() == {}
    torch.testing.assert_close(out["mean"], out["sample"], rtol=0, atol=0)


def test_kept_sample_is_a_real_single_sample(tiny):
    """The kept sample (N 2, synth_output sample) is what N 1 draws with the same seed (the first noise draw, the
    identity view, same guide start), and it differs from the mean of the two."""
    x = _images(1, seed=12)
    kw = dict(strength=0.5, guide="regression", residual=True, guide_network=_ConstantRegressor(0.4), seed=6)
    single = _sampler(tiny, num_samples=1, **kw)(x, tiny[0])
    s = _sampler(tiny, num_samples=2, views=1, synth_output="sample", **kw)
    out = s(x, tiny[0])
    torch.testing.assert_close(out, single, rtol=0, atol=1e-5)
    assert out is s.last_output.sample and (s.last_output.mean - out).abs().max() > 1e-3


@pytest.mark.parametrize("kw,field", [
    (dict(guidance_scale_1=-0.5), "guidance_scale_1"),
    (dict(guidance_scale_2=-1), "guidance_scale_2"),
    (dict(strength=0), "strength"),
    (dict(strength=1.5), "strength"),
    (dict(num_inference_steps=0), "num_inference_steps"),
    (dict(num_inference_steps=2.5), "num_inference_steps"),
    (dict(num_samples=0), "num_samples"),
    (dict(cache_interval=0), "cache_interval"),
    (dict(cache_interval=1.5), "cache_interval"),
    (dict(cache_interval=2, compile=True), "cache_interval"),
    (dict(guide="DE"), "guide"),  # the target of lge
    (dict(task="t2", guide="T2"), "guide"),
    (dict(guide="XX"), "guide"),
    (dict(task="nope"), "task"),
    (dict(estimator="mean"), "estimator"),
    (dict(synth_output="median"), "synth_output"),
    (dict(synth_output="Mean"), "synth_output"),
])
def test_knob_validation(tiny, kw, field):
    with pytest.raises(ValueError, match=field):
        _sampler(tiny, **kw)


@pytest.mark.parametrize("guide", [None, "", "none", " Null ", "default", "DEFAULT"])
def test_null_guide_is_the_default(tiny, guide):
    assert _sampler(tiny, guide=guide).guide == 0  # lge: C0
    assert _sampler(tiny, task="bssfp", guide=guide).guide == 2  # C0 is the target: T2


def test_bad_input_shape(tiny):
    with pytest.raises(ValueError, match="expected"):
        _sampler(tiny)(torch.rand(1, 2, 64, 64), tiny[0])


def test_deepcache_one_step_is_the_plain_sampler(tiny):
    """With one step the only step is a full one: DeepCache must change nothing."""
    x = _images(2)
    plain = _sampler(tiny, num_inference_steps=1)(x, tiny[0])
    cached = _sampler(tiny, num_inference_steps=1, cache_interval=3)(x, tiny[0])
    torch.testing.assert_close(cached, plain, rtol=0, atol=1e-6)


def test_deepcache_reuses_features_between_full_steps(tiny, monkeypatch):
    """cache_interval=2 over 4 steps: full, shallow, full, shallow; seeded output identical twice, and it differs
    from the plain sampler (the shallow steps really reuse stale deep features)."""
    from bundle import deepcache

    calls = []
    forward = deepcache.DeepCacheUNet.forward
    monkeypatch.setattr(deepcache.DeepCacheUNet, "forward",
                        lambda self, *a, full=True, **k: calls.append(full) or forward(self, *a, full=full, **k))
    x = _images(2)
    a = _sampler(tiny, cache_interval=2)(x, tiny[0])
    assert calls == [True, False, True, False]
    b = _sampler(tiny, cache_interval=2)(x, tiny[0])
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert a.shape == (2, 1, 64, 64)
    assert not torch.allclose(a, _sampler(tiny)(x, tiny[0]), atol=1e-6)


def test_residual_output_is_the_regressor_plus_the_diffusion_change(tiny):
    """residual=True: output = r + dec(z) − dec(enc(r)) (before clamping), i.e. the plain regression-guided output
    shifted by the regressor's image minus the decoded start; it needs guide='regression'."""
    x = _images(2, seed=8)
    kw = dict(strength=0.5, guide="regression", guidance_scale_1=1.5, guidance_scale_2=1.5, seed=2)
    reg = _ConstantRegressor(0.5)
    plain = _sampler(tiny, guide_network=reg, **kw)
    res = _sampler(tiny, guide_network=reg, residual=True, **kw)
    out_plain, out_res = plain(x, tiny[0]), res(x, tiny[0])
    _, ae, _ = tiny
    base = ae.decode_stage_2_outputs(res.last_output.start[1] / SCALE)
    inside = (out_plain > 0.01) & (out_plain < 0.99) & (out_res > 0.01) & (out_res < 0.99)  # away from the clamp
    assert inside.any()
    torch.testing.assert_close(out_res[inside], (out_plain + 0.5 - base)[inside], rtol=0, atol=1e-5)
    with pytest.raises(ValueError, match="residual"):
        _sampler(tiny, residual=True)


def test_views_spread_the_samples_over_flipped_inputs(tiny):
    """views=V: N/V samples per flipped/transposed view, mapped back before the mean; the guide runs in every
    view. views=1 is the plain sampler; views=4 differs from it (the network is not flip-equivariant); every view's
    samples are mapped back before the mean and std; N samples use the most views up to V that divide N."""
    x = _images(2, seed=9)
    kw = dict(strength=0.5, guide="regression", residual=True, num_samples=4, seed=3)
    reg = _ConstantRegressor(0.4)
    plain = _sampler(tiny, guide_network=reg, **kw)(x, tiny[0])
    torch.testing.assert_close(_sampler(tiny, guide_network=reg, views=1, **kw)(x, tiny[0]), plain, rtol=0, atol=0)
    s = _sampler(tiny, guide_network=reg, views=4, **kw)
    four = s(x, tiny[0])
    assert four.shape == (2, 1, 64, 64) and s.last_output.std.shape == (2, 1, 64, 64)
    assert not torch.allclose(four, plain, atol=1e-4)
    assert reg.inputs[-1].shape[0] == 8  # the guide ran on 4 views of 2 slices in one batch
    # the mapping back: samples = the view's C0 plus a left-right ramp; views 2 average it with its mirror
    s2 = _sampler(tiny, views=2, num_samples=4)
    ramp = torch.linspace(0, 1, 64)
    s2.pipeline.samples = lambda imgs, net, n: ((imgs[:, :1] + ramp)[:, None].expand(-1, n, -1, -1, -1), None)
    mean = s2(x, tiny[0])
    torch.testing.assert_close(mean, x[:, :1] + 0.5)
    torch.testing.assert_close(s2.last_output.std, ((ramp - ramp.flip(0)).abs() / 2).expand_as(mean))
    assert [_sampler(tiny, num_samples=n, views=8).views for n in (1, 2, 3, 4, 6, 16)] == [1, 2, 1, 4, 2, 8]
    with pytest.raises(ValueError, match="views"):
        _sampler(tiny, views=3)


def test_x0_estimator_is_the_first_steps_clean_estimate(tiny):
    """estimator='x0': one batched network call at the first timestep of the strength's schedule, and the output is
    the decoded x̂0 = (z_t − √(1−ᾱ_t)·ε̃) / √ᾱ_t of that call (computed here independently); it differs from the
    DDIM chain ('sample'), which runs int(steps·strength) calls."""
    net, ae, p = tiny
    x = _images(2, seed=8)
    kw = dict(strength=0.5, guide="T2", guidance_scale_1=1.0, guidance_scale_2=1.0, seed=5)
    eps_seen = []
    h = net.register_forward_hook(lambda m, a, o: eps_seen.append((a[0].clone(), a[1].clone(), o.clone())))
    try:
        out = _sampler(tiny, estimator="x0", **kw)(x, net)
    finally:
        h.remove()
    assert len(eps_seen) == 1
    x_in, tt, e = eps_seen[0]
    sched = _scheduler(p)
    sched.set_timesteps(STEPS)
    t = int(sched.timesteps[STEPS - int(STEPS * 0.5)])
    assert int(tt[0]) == t
    # c_I1 = c_I2 = 1: ε̃ = ε(c1, c2), the first half of the batch (branch-major); z_t the first latent channels
    lc = ae.encode(x[:, :1])[0].shape[1]
    z_t, eps = x_in[:2, :lc], e[:2]
    abar = sched.alphas_cumprod[t]
    x0 = (z_t - (1 - abar).sqrt() * eps) / abar.sqrt()
    ref = ae.decode_stage_2_outputs(x0 / SCALE).clamp(0, 1)
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-5)
    chain = _sampler(tiny, estimator="sample", **kw)(x, net)
    assert not torch.allclose(out, chain, atol=1e-4)


def _flow_scheduler():
    from monai.networks.schedulers import RFlowScheduler

    return RFlowScheduler(num_train_timesteps=1000, use_discrete_timesteps=True, sample_method="uniform")


def test_flow_sampler_is_the_guided_euler_chain(tiny):
    """prediction_type flow: from z = (1 − s)·guide + s·noise (s = the first timestep / T), Euler steps
    z ← z + ṽ·(1/steps) with ṽ the two-scale combination of the velocities, computed here independently."""
    net, ae, p = tiny
    x = _images(2, seed=11)
    strength, s1, s2, seed, steps = 0.5, 1.5, 2.0, 3, 8
    out = _sampler(tiny, scheduler=_flow_scheduler(), strength=strength, guide="T2", guidance_scale_1=s1,
                   guidance_scale_2=s2, seed=seed, num_inference_steps=steps)(x, net)
    b = x.shape[0]
    lat = torch.stack([ae.encode(x[:, i : i + 1])[0] * SCALE for i in range(3)], 1)  # (B, 3, lc, h, w)
    lc, h, w = lat.shape[2:]
    noise = torch.randn((b, lc, h, w), generator=torch.Generator().manual_seed(seed))
    ts = [round((1 - i / steps) * 1000) for i in range(steps)][steps - int(steps * strength):]
    assert ts == [500, 375, 250, 125]
    z = (1 - ts[0] / 1000) * lat[:, 2] + ts[0] / 1000 * noise
    labels = torch.full((b,), 1, dtype=torch.long)

    def vel(t, kept):
        keep = torch.zeros(b, 3, dtype=torch.bool)
        keep[:, kept] = True
        cond = (lat * keep.view(b, 3, 1, 1, 1).float()).reshape(b, 3 * lc, h, w)
        return net(torch.cat([z, cond], 1), torch.full((b,), t), context=net.context(x, keep), class_labels=labels)

    with torch.no_grad():
        for t in ts:
            v_full, v_c1, v_null = vel(t, [0, 2]), vel(t, [0]), vel(t, [])
            z = z + (v_null + s1 * (v_c1 - v_null) + s2 * (v_full - v_c1)) / steps
        ref = ae.decode_stage_2_outputs(z / SCALE).clamp(0, 1)
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-5)


class _ToLatent(nn.Module):
    """A stand-in denoiser whose velocity points from z_t straight at a fixed latent: v = (goal − z_t)/(t/T)."""

    def __init__(self, goal: torch.Tensor) -> None:
        super().__init__()
        self.goal = goal

    def context(self, images, keep):
        return torch.zeros(images.shape[0], 1, 1)

    def forward(self, x, t, context=None, class_labels=None):
        z = x[:, : self.goal.shape[1]]
        return (self.goal.expand_as(z) - z) / (t.float().view(-1, 1, 1, 1) / 1000)


def test_flow_chain_and_x0_land_on_the_velocity_fields_target(tiny):
    """The flow chain ends at t = 0: with the exact velocity of a point target both estimators decode that target
    (the chain after int(steps·strength) Euler steps, x0 after one)."""
    _, ae, _ = tiny
    x = _images(1, seed=12)
    goal = ae.encode(_images(1, seed=13)[:, :1])[0] * SCALE
    want = ae.decode_stage_2_outputs(goal / SCALE).clamp(0, 1)
    net = _ToLatent(goal)
    for est in ("sample", "x0"):
        out = _sampler(tiny, scheduler=_flow_scheduler(), strength=0.3, guide="T2", estimator=est,
                       num_inference_steps=10, guidance_scale_1=1.0, guidance_scale_2=1.0)(x, net)
        torch.testing.assert_close(out, want, rtol=1e-4, atol=1e-4)
    guide = ae.decode_stage_2_outputs(ae.encode(x[:, 2:3])[0]).clamp(0, 1)
    assert (guide - want).abs().max() > 1e-2  # where it started from is not where it lands


def test_texture_is_drawn_onto_the_sample_and_never_onto_the_mean(tiny):
    """With a scanner texture, a volume call adds a texture draw to the kept sample (and to the output of N 1, a
    single sample), inside the body only; the mean of N and the std are the same as without it."""
    from bundle.texture import ScannerTexture

    tex = ScannerTexture(3)
    tex.kernels.fill_(0.01)
    vol = torch.rand(1, 3, 64, 64, 2) * 0.5 + 0.25
    runs = {}
    for t in (None, tex):
        s = _sampler(tiny, num_samples=4, views=1, texture=t)
        s.pipeline.samples = _fake_samples
        s(vol, tiny[0])
        runs[t is not None] = (s.last_output.mean, s.last_output.sample, s.last_output.std)
    torch.testing.assert_close(runs[True][0], runs[False][0])
    torch.testing.assert_close(runs[True][2], runs[False][2])
    diff = (runs[True][1] - runs[False][1]).abs()
    assert diff.mean() > 0.01 and runs[True][1].min() >= 0 and runs[True][1].max() <= 1
    one = {t is not None: _sampler(tiny, num_samples=1, num_inference_steps=1, texture=t)(vol, tiny[0]) for t in (None, tex)}
    assert (one[True] - one[False]).abs().mean() > 0.01


@pytest.mark.parametrize("scales", [(1.5, 2.0), (2.5, 2.5)])
def test_guided_denoiser_is_the_two_scale_combination(tiny, scales):
    """GuidedDenoiser alone: one batched call equals ε(∅,∅) + c_I1·[ε(c1,∅) − ε(∅,∅)] + c_I2·[ε(c1,c2) − ε(c1,∅)] from
    separate forwards of each branch (2 branches when c_I1 = c_I2), for n samples per slice."""
    from bundle.sampler import CMRDiffPipeline, GuidedDenoiser

    net, ae, _ = tiny
    x, n = _images(2, seed=14), 2
    pipe = _sampler(tiny).pipeline
    lat = pipe.encode(x)  # (2, 3, lc, h, w): lge, C0 and T2 encoded, DE zero
    assert isinstance(pipe, CMRDiffPipeline) and (lat[:, 1] == 0).all()
    den = GuidedDenoiser(net, x, lat, 1, (0, 2), scales, n=n)
    assert den.branches == (2 if scales[0] == scales[1] else 3)
    z = torch.randn(2 * n, *lat.shape[2:], generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        got = den(z, 500)

        def eps(kept):
            keep = torch.zeros(2 * n, 3, dtype=torch.bool)
            keep[:, kept] = True
            lb = lat.repeat_interleave(n, 0)
            cond = (lb * keep.view(-1, 3, 1, 1, 1).float()).reshape(2 * n, -1, *lat.shape[3:])
            return net(torch.cat([z, cond], 1), torch.full((2 * n,), 500), context=net.context(
                x.repeat_interleave(n, 0), keep), class_labels=torch.ones(2 * n, dtype=torch.long))

        e_full, e_c1, e_null = eps([0, 2]), eps([0]), eps([])
    want = e_null + scales[0] * (e_c1 - e_null) + scales[1] * (e_full - e_c1)
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("num_samples", [4, 1])
def test_evaluator_items_get_their_own_outputs(tiny, num_samples):
    """In MONAI's SupervisedEvaluator with the SynthesisOutputs handler, a batch of 2 volumes: each item's engine
    output (what the post-processing and the metrics read) holds its own mean / sample / std of the sampler's call
    beside ``pred`` (the mean, synth_output mean); with N 1 only ``pred`` (the single sample)."""
    from monai.data import DataLoader, Dataset
    from monai.engines import SupervisedEvaluator

    from bundle.sampler import SynthesisOutputs

    s = _sampler(tiny, num_samples=num_samples, views=1, num_inference_steps=1)
    s.pipeline.samples = _fake_samples
    vols = torch.rand(2, 3, 64, 64, 2) * 0.5
    seen = []

    def post(d):
        seen.append({k: d.get(k) for k in ("pred", "mean", "sample", "std")})
        return d

    ev = SupervisedEvaluator(device=torch.device("cpu"), network=tiny[0], inferer=s, postprocessing=post,
                             val_data_loader=DataLoader(Dataset([{"image": v} for v in vols]), batch_size=2),
                             val_handlers=[SynthesisOutputs(s)],
                             prepare_batch=lambda b, device, non_blocking, **kw: (b["image"], None))
    ev.run()
    out = s.last_output
    assert len(seen) == 2
    for i, d in enumerate(seen):
        torch.testing.assert_close(d["pred"], out.mean[i])
        if num_samples == 1:
            assert d["mean"] is None and d["sample"] is None and d["std"] is None
        else:
            for k in ("mean", "sample", "std"):
                torch.testing.assert_close(d[k], getattr(out, k)[i])
            assert (d["mean"] - d["sample"]).abs().max() > 0.1  # the mean of 4 is not the first sample
