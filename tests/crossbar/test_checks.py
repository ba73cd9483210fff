"""The shared validation helpers (crossbar/_checks.py) behind every frozen configuration."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest

from crossbar._checks import check_enum, check_float, check_int, check_optional_instance, check_positive_ints


class Color(enum.Enum):
    RED = "red"
    BLUE = "blue"


@dataclass(frozen=True)
class Box:
    value: Any


def test_int_coerces_numpy_integers_and_names_the_bounds():
    b = Box(np.int64(3))
    check_int(b, "value", 1, 5)
    assert b.value == 3 and type(b.value) is int
    with pytest.raises(ValueError, match=r"^Box.value = 7 must be an integer in \[1, 5\]$"):
        check_int(Box(7), "value", 1, 5)
    with pytest.raises(ValueError, match=r"must be an integer >= 1$"):
        check_int(Box(0), "value", 1)
    with pytest.raises(ValueError, match="must be an integer"):
        check_int(Box(True), "value", 0, 5)  # bools are not integers here
    check_int(Box(None), "value", 1, 5, allow_none=True)
    with pytest.raises(ValueError, match=r"\[2, 24\] or None \(ideal\)$"):
        check_int(Box(1), "value", 2, 24, allow_none=True, none_means="ideal")


def test_float_bounds_units_open_low_and_infinity():
    b = Box(np.float32(0.5))
    check_float(b, "value", 0.0, 1.0)
    assert b.value == 0.5 and type(b.value) is float
    with pytest.raises(ValueError, match=r"^Box.value = 0 s must be in \(0, 1\] s$"):
        check_float(Box(0), "value", 0.0, 1.0, " s", open_low=True)
    for bad in (float("nan"), float("inf")):
        with pytest.raises(ValueError, match="must be in"):
            check_float(Box(bad), "value", 0.0, float("inf"))
    check_float(Box(float("inf")), "value", 0.0, float("inf"), allow_inf=True)
    with pytest.raises(ValueError, match="must be a number"):
        check_float(Box("1.0"), "value", 0.0, 2.0)


def test_enum_takes_a_member_or_its_value():
    b = Box("blue")
    check_enum(b, "value", Color)
    assert b.value is Color.BLUE
    with pytest.raises(ValueError, match=r"must be one of 'red', 'blue'$"):
        check_enum(Box("green"), "value", Color)


def test_optional_instance():
    check_optional_instance(Box(None), "value", Color)
    with pytest.raises(ValueError, match="must be None or a Color"):
        check_optional_instance(Box(3), "value", Color)


def test_positive_ints_of_plain_arguments():
    check_positive_ints(a=1, b=7)
    for bad in (0, -1, True, 2.0, None):
        with pytest.raises(ValueError, match=r"^b = .* must be a positive integer$"):
            check_positive_ints(a=1, b=bad)
