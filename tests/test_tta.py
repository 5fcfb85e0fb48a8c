"""bundle.tta: the dihedral views, their inverses, the batched view mean and the knob check."""

from __future__ import annotations

import pytest
import torch

from bundle.errors import ConfigError
from bundle.tta import check_views, effective_views, stack_views, unstack_views, unview, view, view_mean


def test_the_eight_views_are_distinct_and_inverted():
    x = torch.rand(2, 3, 5, 5)
    seen = set()
    for v in range(8):
        y = view(x, v)
        torch.testing.assert_close(unview(y, v), x, rtol=0, atol=0)
        seen.add(tuple(y.flatten().tolist()))
    assert len(seen) == 8
    torch.testing.assert_close(view(x, 3), torch.rot90(x, 2, (-2, -1)))  # both flips = rotation by 180°


def test_stack_and_unstack_views():
    x = torch.rand(2, 1, 4, 4)
    s = stack_views(x, 4)
    assert s.shape == (8, 1, 4, 4)
    torch.testing.assert_close(s[2:4], x.flip(-1))
    torch.testing.assert_close(unstack_views(s, 4), x.expand(4, *x.shape))
    assert stack_views(x, 1) is x
    with pytest.raises(ValueError, match="square"):
        stack_views(torch.rand(1, 1, 4, 6), 8)
    assert stack_views(torch.rand(1, 1, 4, 6), 4).shape == (4, 1, 4, 6)  # flips only: any shape


def test_view_mean_averages_a_non_equivariant_map_and_keeps_an_equivariant_one():
    x = torch.rand(1, 1, 6, 6)
    calls = []

    def fn(t):
        calls.append(t.shape[0])
        return t * 2

    torch.testing.assert_close(view_mean(fn, x, 8), 2 * x)  # equivariant: unchanged
    assert calls == [8]  # one batched call
    ramp = torch.arange(6.0).expand(1, 1, 6, 6)  # adds a left-to-right ramp: not flip-equivariant
    out = view_mean(lambda t: t + ramp, x, 2)
    torch.testing.assert_close(out, x + 2.5)  # the ramp and its mirror average to a constant


@pytest.mark.parametrize("bad", [3, 0, "16", True, None, 2.5])
def test_check_views(bad):
    assert check_views(8) == 8 and check_views("4") == 4
    with pytest.raises(ConfigError, match="views"):
        check_views(bad)


def test_effective_views_divide_the_samples():
    assert [effective_views(8, n) for n in (1, 2, 3, 4, 8, 12, 16, 32)] == [1, 2, 1, 4, 8, 4, 8, 8]
    assert effective_views(2, 16) == 2 and effective_views(1, 16) == 1
