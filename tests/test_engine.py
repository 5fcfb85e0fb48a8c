"""bundle/engine.py: task slots, condition dropout, the prepare-batch, the training inferer and the latent cache."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from monai.networks.schedulers import DDPMScheduler
from torch import nn

from bundle.engine import (
    CMRDiffPrepareBatch,
    CMRDiffTrainInferer,
    condition_dropout,
    encode_slices,
    task_slots,
)
from bundle.errors import ConfigError
from bundle.losses import latent_mask

LC, H, W, IMG = 4, 16, 16, 64


@pytest.fixture(scope="module")
def tasks(parser):
    return parser().get_parsed_content("tasks")


def _batch(b: int = 8, seed: int = 0, mask: bool = True) -> dict:
    g = torch.Generator().manual_seed(seed)
    out = {
        "image": torch.rand(b, 3, IMG, IMG, generator=g),
        "latent": torch.randn(b, 3 * LC, H, W, generator=g),
        "case": [f"myops_training_{101 + i % 3}" for i in range(b)],
        "slice": torch.arange(b),
    }
    if mask:
        out["mask"] = (torch.rand(b, 1, IMG, IMG, generator=g) > 0.9).float()
    return out


def _prep(tasks, task="lge", **kw):
    kw.setdefault("drop_prob", 0.05)
    return CMRDiffPrepareBatch(num_train_timesteps=1000, task=task, tasks=tasks, latent_channels=LC, **kw)


# ---------------------------------------------------------------------------------------------- task_slots
@pytest.mark.parametrize("task, slots", [("lge", (1, 0, 2)), ("t2", (2, 0, 1)), ("bssfp", (0, 2, 1))])
def test_task_slots(tasks, task, slots):
    assert task_slots(task, tasks) == slots


def test_task_slots_unknown(tasks):
    with pytest.raises(ValueError, match="unknown task 'flair'"):
        task_slots("flair", tasks)


# ------------------------------------------------------------------------------------- condition_dropout
def test_condition_dropout_rates():
    n, p = 200_000, 0.05
    keep1, keep2 = condition_dropout(n, p, torch.Generator().manual_seed(0))
    assert keep1.shape == keep2.shape == (n,) and keep1.dtype == keep2.dtype == torch.bool
    rate = lambda m: m.float().mean().item()  # noqa: E731
    assert rate(keep1 & ~keep2) == pytest.approx(p, abs=0.005)  # only condition 2 dropped
    assert rate(~keep1 & ~keep2) == pytest.approx(p, abs=0.005)  # both dropped
    assert rate(~keep1 & keep2) == pytest.approx(p, abs=0.005)  # only condition 1 dropped
    assert rate(keep1 & keep2) == pytest.approx(1 - 3 * p, abs=0.005)


def test_condition_dropout_joint_drops_both_together():
    keep1, keep2 = condition_dropout(100_000, 0.15, torch.Generator().manual_seed(0), joint=True)
    assert torch.equal(keep1, keep2)
    assert (~keep1).float().mean().item() == pytest.approx(0.15, abs=0.005)


def test_joint_dropout_allows_larger_rate_and_validates(tasks):
    _prep(tasks, drop_prob=0.5, joint_dropout=True)
    with pytest.raises(ValueError, match="drop_prob"):
        _prep(tasks, drop_prob=0.5)


def test_condition_dropout_zero_keeps_all():
    keep1, keep2 = condition_dropout(1000, 0.0)
    assert keep1.all() and keep2.all()


# ----------------------------------------------------------------------------------- CMRDiffPrepareBatch
def _latent_slots(batch):
    return batch["latent"].view(-1, 3, LC, H, W)


def test_prepare_batch_shapes_and_values(tasks):
    b = 8
    batch = _batch(b)
    target, (goal, mask), args, kw = _prep(tasks, "lge", drop_prob=0.0)(batch)
    assert target.shape == (b, LC, H, W) and goal.shape == (b, LC, H, W) and mask.shape == (b, 1, H, W)
    assert args == ()
    assert set(kw) == {"noise", "timesteps", "cond", "images", "keep", "class_labels"}
    assert kw["noise"].shape == (b, LC, H, W)
    assert kw["timesteps"].shape == (b,) and kw["timesteps"].dtype == torch.long
    assert ((kw["timesteps"] >= 0) & (kw["timesteps"] < 1000)).all()
    assert kw["cond"].shape == (b, 3 * LC, H, W)
    assert kw["images"].shape == (b, 3, IMG, IMG)
    assert kw["keep"].shape == (b, 3) and kw["keep"].dtype == torch.bool
    torch.testing.assert_close(goal, kw["noise"])  # epsilon prediction: the target is the noise
    torch.testing.assert_close(kw["images"], batch["image"])
    # lge: target DE (1), conditions C0 (0) and T2 (2)
    assert (kw["class_labels"] == 1).all()
    torch.testing.assert_close(target, _latent_slots(batch)[:, 1])
    assert kw["keep"].tolist() == [[True, False, True]] * b
    cond = kw["cond"].view(b, 3, LC, H, W)
    assert (cond[:, 1] == 0).all()
    torch.testing.assert_close(cond[:, [0, 2]], _latent_slots(batch)[:, [0, 2]])
    torch.testing.assert_close(mask, latent_mask(batch["mask"], (H, W)))
    assert mask.sum() > 0


def test_prepare_batch_without_mask_gives_zero_mask(tasks):
    _, (_, mask), _, _ = _prep(tasks)(_batch(4, mask=False))
    assert mask.shape == (4, 1, H, W) and (mask == 0).all()


@pytest.mark.parametrize("task", ["lge", "t2", "bssfp", "any"])
def test_prepare_batch_dropout_zeroes_dropped_conditions(tasks, task):
    b = 256
    batch = _batch(b, seed=1)
    target, _, _, kw = _prep(tasks, task, drop_prob=0.25)(batch)
    lat, cond, keep = _latent_slots(batch), kw["cond"].view(b, 3, LC, H, W), kw["keep"]
    tgt = kw["class_labels"]
    idx = torch.arange(b)
    torch.testing.assert_close(target, lat[idx, tgt])
    assert not keep[idx, tgt].any()  # the target slot is never a condition
    assert (cond[idx, tgt] == 0).all()
    k = keep.view(b, 3, 1, 1, 1)
    assert torch.equal(torch.where(k, cond, lat), lat)  # kept slots: the condition latent
    assert (cond[~keep] == 0).all()  # dropped slots (and the target's): zero
    assert set(keep.sum(1).tolist()) == {0, 1, 2}  # with p = 1/4 every dropout case occurs
    if task != "any":
        assert (tgt == task_slots(task, tasks)[0]).all()


def test_prepare_batch_any_draws_every_target_with_its_conditions(tasks):
    b = 300
    _, _, _, kw = _prep(tasks, "any", drop_prob=0.0)(_batch(b, seed=2))
    tgt, keep = kw["class_labels"], kw["keep"]
    counts = torch.bincount(tgt, minlength=3)
    assert (counts > 50).all(), counts  # roughly uniform over the three targets
    by_target = {task_slots(t, tasks)[0]: task_slots(t, tasks) for t in tasks}
    for i in range(b):
        t, c1, c2 = by_target[int(tgt[i])]
        expected = [False] * 3
        expected[c1] = expected[c2] = True
        assert keep[i].tolist() == expected


def test_prepare_batch_seed_reproducible(tasks):
    batch = _batch(8, seed=3)
    a = _prep(tasks, "any", drop_prob=1 / 3, seed=7)(batch)
    b = _prep(tasks, "any", drop_prob=1 / 3, seed=7)(batch)
    torch.testing.assert_close(a[0], b[0])
    torch.testing.assert_close(a[1], b[1])
    for k in a[3]:
        torch.testing.assert_close(a[3][k], b[3][k])
    # another seed, other draws
    d = _prep(tasks, "any", drop_prob=1 / 3, seed=8)(batch)
    assert not torch.equal(a[3]["noise"], d[3]["noise"])
    # another batch (other slices) gets other noise under the same seed
    other = dict(batch, slice=torch.arange(8) + 100)
    c = _prep(tasks, "any", drop_prob=1 / 3, seed=7)(other)
    assert not torch.equal(a[3]["noise"], c[3]["noise"])
    # no seed: fresh randomness every call
    prep = _prep(tasks, "any", drop_prob=1 / 3, seed=None)
    n1, n2 = prep(batch)[3], prep(batch)[3]
    assert not torch.equal(n1["noise"], n2["noise"])
    assert not torch.equal(n1["timesteps"], n2["timesteps"])


def test_prepare_batch_v_prediction(tasks):
    sched = DDPMScheduler(num_train_timesteps=1000, schedule="scaled_linear_beta", beta_start=0.0015,
                          beta_end=0.0195, prediction_type="v_prediction")
    target, (goal, _), _, kw = _prep(tasks, "t2", scheduler=sched, seed=0)(_batch(6, seed=4))
    torch.testing.assert_close(goal, sched.get_velocity(target, kw["noise"], kw["timesteps"]))
    # v = sqrt(ᾱ_t)·ε − sqrt(1 − ᾱ_t)·x0
    ab = sched.alphas_cumprod[kw["timesteps"]].view(-1, 1, 1, 1)
    torch.testing.assert_close(goal, ab.sqrt() * kw["noise"] - (1 - ab).sqrt() * target)
    assert not torch.allclose(goal, kw["noise"])


def test_prepare_batch_rectified_flow(tasks):
    """prediction_type flow: the goal is the rectified-flow velocity x0 − noise, the timesteps are uniform integers
    in [0, num_train_timesteps) like the DDPM draw (same generator: same timesteps and noise), and the flow type without an
    RFlowScheduler (or the scheduler with another type) is refused."""
    from monai.networks.schedulers import RFlowScheduler

    sched = RFlowScheduler(num_train_timesteps=1000, use_discrete_timesteps=True, sample_method="uniform")
    batch = _batch(6, seed=4)
    target, (goal, _), _, kw = _prep(tasks, "t2", scheduler=sched, prediction_type="flow", seed=0)(batch)
    torch.testing.assert_close(goal, target - kw["noise"])
    _, (eps_goal, _), _, kw_eps = _prep(tasks, "t2", seed=0)(batch)
    assert torch.equal(kw["timesteps"], kw_eps["timesteps"]) and torch.equal(eps_goal, kw["noise"])
    assert kw["timesteps"].dtype == torch.long and int(kw["timesteps"].max()) < 1000
    # the training inferer noises on the flow's straight line z_t = (1 − t/T)·x0 + (t/T)·noise
    spy = _Spy()
    CMRDiffTrainInferer(sched)(target, spy, **kw)
    s = (kw["timesteps"].float() / 1000).view(-1, 1, 1, 1)
    torch.testing.assert_close(spy.calls[0][0][:, :LC], (1 - s) * target + s * kw["noise"])
    with pytest.raises(ConfigError, match="flow"):
        _prep(tasks, "t2", prediction_type="flow")
    with pytest.raises(ConfigError, match="flow"):
        _prep(tasks, "t2", scheduler=sched, prediction_type="epsilon")


def test_prepare_batch_drop_prob_range(tasks):
    with pytest.raises(ValueError, match="drop_prob"):
        _prep(tasks, drop_prob=0.4)
    with pytest.raises(ValueError, match="unknown task"):
        _prep(tasks, task="flair")


# ------------------------------------------------------------------------------------ CMRDiffTrainInferer
class _Spy(nn.Module):
    def __init__(self):
        super().__init__()
        self.calls = []

    def forward(self, x, timesteps, **kwargs):
        self.calls.append((x, timesteps, kwargs))
        return x[:, :LC] * 2


def test_train_inferer_calls_network_with_noised_input():
    sched = DDPMScheduler(num_train_timesteps=1000)
    g = torch.Generator().manual_seed(5)
    b = 3
    inputs, noise = torch.randn(b, LC, H, W, generator=g), torch.randn(b, LC, H, W, generator=g)
    cond = torch.randn(b, 3 * LC, H, W, generator=g)
    images, keep = torch.rand(b, 3, IMG, IMG, generator=g), torch.tensor([[1, 0, 1]] * b, dtype=torch.bool)
    t, labels = torch.tensor([0, 500, 999]), torch.tensor([1, 1, 1])
    spy = _Spy()
    out = CMRDiffTrainInferer(scheduler=sched)(inputs, spy, noise=noise, timesteps=t, cond=cond, images=images,
                                               keep=keep, class_labels=labels)
    assert len(spy.calls) == 1
    x, ts, kw = spy.calls[0]
    ab = sched.alphas_cumprod[t].view(-1, 1, 1, 1)
    noisy = ab.sqrt() * inputs + (1 - ab).sqrt() * noise
    assert x.shape == (b, 4 * LC, H, W)
    torch.testing.assert_close(x[:, :LC], noisy)
    torch.testing.assert_close(x[:, LC:], cond)
    assert torch.equal(ts, t)
    assert kw.keys() == {"class_labels", "images", "keep"}
    assert torch.equal(kw["class_labels"], labels) and torch.equal(kw["images"], images)
    assert torch.equal(kw["keep"], keep)
    torch.testing.assert_close(out, noisy * 2)


# ---------------------------------------------------------------------------------------------- encode_slices
def test_encode_slices_latent_is_scaled_mu(parser):
    torch.manual_seed(0)
    ae = parser(profile="tiny").get_parsed_content("autoencoder").cpu()
    g = torch.Generator().manual_seed(6)
    slices = [{"image": torch.rand(3, IMG, IMG, generator=g), "case": f"c{i}", "slice": i} for i in range(3)]
    scale = 0.7
    out = encode_slices(ae, slices, scale, batch_size=2)  # two chunks
    assert len(out) == 3
    ae.eval()
    with torch.no_grad():
        for s, o in zip(slices, out):
            assert o["case"] == s["case"] and o["slice"] == s["slice"] and o["image"] is s["image"]
            assert o["latent"].shape == (3 * LC, H, W)
            for k in range(3):  # C0, DE, T2
                mu = ae.encode(s["image"][k][None, None])[0][0]
                torch.testing.assert_close(o["latent"][k * LC : (k + 1) * LC], mu * scale, atol=1e-5, rtol=1e-4)
    assert "latent" not in slices[0]  # the input dicts are not modified


# ------------------------------------------------------------------------------------------- bridge recipe
def test_latent_augment_mode_batch_moves_the_flips_into_the_prepare_batch():
    """configs/train_diffusion.yaml: `latent_augment_mode` dataset (default) keeps MONAI's per-slice flips in the
    DataLoader and no batch transform; batch empties the per-slice list and the training prepare batch flips and rotates
    the collated batch (the images the network sees are the drawn flips of the inputs), and the batch transform is
    checkpointed with the random transforms; an unknown mode is an error naming the field."""
    from monai.bundle import ConfigParser

    from bundle.transforms import BatchFlipRot90d

    root = Path(__file__).resolve().parents[1] / "configs"

    def parsed(mode=None):
        p = ConfigParser()
        p.read_config([str(root / "common.yaml"), str(root / "train_diffusion.yaml")])
        p["output_dir"] = "/tmp"
        if mode is not None:
            p["latent_augment_mode"] = mode
        return p

    p = parsed()
    assert len(p.get_parsed_content("latent_augment").transforms) == 3
    assert p.get_parsed_content("train#prepare_batch").augment is None
    p = parsed("batch")
    assert len(p.get_parsed_content("latent_augment").transforms) == 0
    prep = p.get_parsed_content("train#prepare_batch")
    assert isinstance(prep.augment, BatchFlipRot90d)
    assert any(t is prep.augment for t in p.get_parsed_content("train#random_transforms"))
    assert p.get_parsed_content("validate#prepare_batch").augment is None
    lc = p.get_parsed_content("ae")["latent_channels"]
    g = torch.Generator().manual_seed(0)
    batch = {"image": torch.rand(8, 3, 16, 16, generator=g), "latent": torch.rand(8, 3 * lc, 4, 4, generator=g)}
    images = prep(batch)[3]["images"]
    ops = zip(prep.augment._flip0.tolist(), prep.augment._flip1.tolist(), prep.augment._k.tolist())
    moved = 0
    for i, (f0, f1, k) in enumerate(ops):
        x = batch["image"][i]
        x = x.flip(1) if f0 else x
        x = x.flip(2) if f1 else x
        ref = torch.rot90(x, k, (1, 2))
        assert torch.equal(images[i], ref)
        moved += not torch.equal(ref, batch["image"][i])
    assert moved > 0
    with pytest.raises(Exception, match="latent_augment_mode"):
        parsed("gpu").get_parsed_content("latent_augment")
