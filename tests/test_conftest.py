"""The tests' own rules: a missing resource is a skip, and under CI (whatever value a CI system gives it) a
failure."""

from __future__ import annotations

import pytest
from conftest import under_ci


@pytest.mark.parametrize("value", ["true", "True", "1", "yes", "on", "github-actions"])
def test_any_value_a_ci_system_sets_turns_skips_into_failures(value: str) -> None:
    assert under_ci(value)


@pytest.mark.parametrize("value", [None, "", "0", "false", "FALSE", "no", "off", " "])
def test_an_unset_or_false_ci_keeps_skips_as_skips(value: str | None) -> None:
    assert not under_ci(value)
