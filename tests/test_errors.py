"""The knob parsers of bundle/errors.py."""

from __future__ import annotations

import pytest

from bundle.errors import is_null


@pytest.mark.parametrize("value", [None, "", "  ", "none", "None", " NULL ", "null"])
def test_is_null_true(value):
    assert is_null(value)


@pytest.mark.parametrize("value", ["native", "default", "false", "0", 0, 0.0, False, "nonee", "C0", 1.5])
def test_is_null_false_without_aliases(value):
    assert not is_null(value)


def test_is_null_aliases():
    assert is_null("Native", "native", "0") and is_null(" 0 ", "native", "0") and is_null("none", "native")
    assert is_null("DEFAULT", "default") and not is_null("default", "native")
    assert is_null("off", "false", "off") and is_null("False", "false", "off")
    assert not is_null(0, "0") and not is_null(False, "false")  # only strings match an alias


def test_call_sites_keep_their_aliases():
    from bundle.transforms import NormalizeFOVd, is_native

    assert all(is_native(v) for v in (None, "", "none", "Null", "native", "0", 0, "0.0"))
    assert not is_native("1.5") and not is_native(1.5)
    for v in ("none", "null", "false", "OFF", None, False):
        assert NormalizeFOVd(signed_fraction=v).signed_fraction is None
    assert NormalizeFOVd(signed_fraction=True).signed_fraction == 0.01
    assert NormalizeFOVd(signed_fraction=0.05).signed_fraction == 0.05
