"""The config checks every layer shares: bools are never integers or numbers, numbers are
finite, and a refusal is one ConfigError naming the thing, the value and the rule."""

from __future__ import annotations

import math

import pytest

from tuneforge._checks import check_bool, check_int, check_number, is_int, is_number
from tuneforge.errors import ConfigError

BIG = 10**400
"""An int that ``math.isfinite`` cannot convert to a float."""


@pytest.mark.parametrize(("value", "minimum", "expected"), [
    (3, None, True), (-3, None, True), (BIG, 1, True), (1, 1, True), (0, 1, False), (1, 2, False),
    (True, None, False), (False, 0, False), (1.0, None, False), ("1", None, False), (None, None, False),
])
def test_is_int_refuses_bools_floats_and_values_under_the_minimum(value, minimum, expected: bool) -> None:
    assert is_int(value, minimum) is expected


@pytest.mark.parametrize(("value", "finite", "expected"), [
    (0, True, True), (-2.5, True, True), (BIG, True, True), (math.inf, True, False), (math.nan, True, False),
    (math.inf, False, True), (math.nan, False, True), (True, True, False), (False, False, False),
    ("1.0", True, False), (None, False, False),
])
def test_is_number_refuses_bools_text_and_by_default_inf_and_nan(value, finite: bool, expected: bool) -> None:
    assert is_number(value, finite=finite) is expected


@pytest.mark.parametrize(("minimum", "value", "message"), [
    (1, 0, "n_critic: 0 is not allowed; it must be a positive integer"),
    (1, True, "n_critic: True is not allowed; it must be a positive integer"),
    (2, 1, "n_critic: 1 is not allowed; it must be an integer >= 2"),
    (None, 1.0, "n_critic: 1.0 is not allowed; it must be an integer"),
])
def test_check_int_names_the_field_the_value_and_the_rule(minimum, value, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        check_int("n_critic", value, minimum=minimum)
    assert str(caught.value) == message


@pytest.mark.parametrize(("bounds", "value", "message"), [
    ({"above": 0}, 0.0, "rate: 0.0 is not allowed; it must be a number > 0"),
    ({"above": 0}, True, "rate: True is not allowed; it must be a number > 0"),
    ({"above": 0}, math.inf, "rate: inf is not allowed; it must be a finite number > 0"),
    ({"at_least": 0}, -1.0, "rate: -1.0 is not allowed; it must be a number >= 0"),
    ({"at_least": 0, "below": 1}, 1.0, "rate: 1.0 is not allowed; it must satisfy 0 <= rate < 1"),
    ({"at_least": 0, "below": 1}, False, "rate: False is not allowed; it must satisfy 0 <= rate < 1"),
    ({"at_least": 0, "below": 1}, math.nan, "rate: nan is not allowed; it must satisfy 0 <= rate < 1"),
    ({}, "0.1", "rate: '0.1' is not allowed; it must be a number"),
])
def test_check_number_names_the_field_the_value_and_the_rule(bounds: dict, value, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        check_number("rate", value, **bounds)
    assert str(caught.value) == message


def test_the_checks_return_what_they_allow() -> None:
    assert check_int("n", 3, minimum=1) == 3
    assert check_number("rate", 0, at_least=0, below=1) == 0
    assert check_number("ratio", BIG, above=0) == BIG
    assert check_bool("flag", False) is False
    with pytest.raises(ConfigError, match=r"^flag: 1 is not allowed; it must be true or false$"):
        check_bool("flag", 1)
