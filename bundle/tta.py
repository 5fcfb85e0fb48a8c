"""Test-time views: the dihedral group of the square on the last two axes (flips and transposes), the symmetries
every network here was trained under (flips and rot90 of slices or latents). ``views`` V ∈ {1, 2, 4, 8} uses the
first V elements: 1 = identity, 2 = + left-right flip, 4 = every flip (any H, W), 8 = with the transposes
(H = W). A model run on all V views of an input, mapped back and averaged, makes errors that are not shared
between the views cancel.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from bundle.errors import ConfigError

VIEWS = (1, 2, 4, 8)


def check_views(views) -> int:
    """``views`` as an int, or a ConfigError naming the field."""
    if isinstance(views, bool) or str(views).strip() not in {str(v) for v in VIEWS}:
        raise ConfigError(f"views must be one of {VIEWS}, got {views!r}")
    return int(str(views).strip())


def effective_views(views, num_samples: int) -> int:
    """How many views N samples are spread over: the largest of ``VIEWS`` up to ``views`` that divides N (so N 1
    stays one plain sample, N 4 uses 4 views and N 16 all 8)."""
    views = check_views(views)
    return max(v for v in VIEWS if v <= views and int(num_samples) % v == 0)


def view(x: torch.Tensor, v: int) -> torch.Tensor:
    """Element ``v`` (0..7) of the group applied to x (..., H, W): bit 0 flips W, bit 1 flips H, bit 2 transposes."""
    if v & 1:
        x = x.flip(-1)
    if v & 2:
        x = x.flip(-2)
    return x.transpose(-2, -1) if v & 4 else x


def unview(x: torch.Tensor, v: int) -> torch.Tensor:
    """The inverse of :func:`view`: ``unview(view(x, v), v) == x``."""
    if v & 4:
        x = x.transpose(-2, -1)
    if v & 2:
        x = x.flip(-2)
    return x.flip(-1) if v & 1 else x


def stack_views(x: torch.Tensor, views: int) -> torch.Tensor:
    """x (B, ...) -> (V·B, ...): the V views stacked view-major along the batch axis."""
    if views > 4 and x.shape[-1] != x.shape[-2]:
        raise ValueError(f"views {views} transpose the slices: they must be square, got {tuple(x.shape[-2:])}")
    return torch.cat([view(x, v) for v in range(views)]) if views > 1 else x


def unstack_views(y: torch.Tensor, views: int) -> torch.Tensor:
    """(V·B, ...) outputs of :func:`stack_views` inputs -> (V, B, ...), each view mapped back."""
    return torch.stack([unview(c, v) for v, c in enumerate(y.chunk(views))])


def view_mean(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, views: int) -> torch.Tensor:
    """The mean over ``views`` of ``unview(fn(view(x)))``, in one batched call of ``fn``: x (B, ...) -> (B, ...)."""
    if views == 1:
        return fn(x)
    return unstack_views(fn(stack_views(x, views)), views).mean(0)
