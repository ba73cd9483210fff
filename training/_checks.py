"""Validation helpers for the frozen parameter groups of ``training``.

Every check raises :class:`ValueError` whose one-line message names the class, the field and the value.
Numbers are coerced to ``float``/``int`` in place (``object.__setattr__`` on the frozen instance).
"""

from __future__ import annotations

import enum
import math

__all__ = ["check_enum", "check_float", "check_int", "check_optional_instance"]


def check_int(obj: object, name: str, lo: int, hi: int, *, allow_none: bool = False) -> None:
    """``getattr(obj, name)`` must be an integer in ``[lo, hi]`` (or ``None`` when allowed)."""
    value = getattr(obj, name)
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        extra = " or None" if allow_none else ""
        raise ValueError(f"{type(obj).__name__}.{name} = {value!r} must be an integer in [{lo}, {hi}]{extra}")


def check_float(
    obj: object,
    name: str,
    lo: float,
    hi: float,
    *,
    open_low: bool = False,
    unit: str = "",
) -> None:
    """``getattr(obj, name)`` must be a finite number in ``[lo, hi]`` (``(lo, hi]`` when ``open_low``)."""
    value = getattr(obj, name)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{type(obj).__name__}.{name} = {value!r} must be a number{unit}")
    value = float(value)
    low_ok = value > lo if open_low else value >= lo
    if not math.isfinite(value) or not low_ok or value > hi:
        bracket = "(" if open_low else "["
        raise ValueError(f"{type(obj).__name__}.{name} = {value:g}{unit} must be in {bracket}{lo:g}, {hi:g}]{unit}")
    object.__setattr__(obj, name, value)


def check_enum(obj: object, name: str, cls: type[enum.Enum]) -> None:
    """``getattr(obj, name)`` must be a member (or the value of a member) of ``cls``."""
    value = getattr(obj, name)
    if isinstance(value, cls):
        return
    try:
        object.__setattr__(obj, name, cls(value))
    except ValueError:
        options = ", ".join(repr(m.value) for m in cls)
        raise ValueError(f"{type(obj).__name__}.{name} = {value!r} must be one of {options}") from None


def check_optional_instance(obj: object, name: str, cls: type | tuple[type, ...]) -> None:
    """``getattr(obj, name)`` must be ``None`` or an instance of ``cls``."""
    value = getattr(obj, name)
    if value is not None and not isinstance(value, cls):
        names = cls.__name__ if isinstance(cls, type) else " or ".join(c.__name__ for c in cls)
        raise ValueError(f"{type(obj).__name__}.{name} = {value!r} must be None or a {names}")
