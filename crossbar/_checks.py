"""Validation helpers for the frozen parameter dataclasses of ``crossbar`` (and ``training``).

Every check raises :class:`ValueError` with a one-line message naming the class, the field and the value,
and coerces accepted numbers in place (``object.__setattr__`` on the frozen instance): NumPy integers to
``int``, any real number to ``float``, an enum's value to its member. No NumPy or torch import.
"""

from __future__ import annotations

import enum
import math
import numbers

__all__ = ["check_enum", "check_float", "check_int", "check_optional_instance", "check_positive_ints"]


def check_int(obj: object, name: str, lo: int, hi: int | None = None, *, allow_none: bool = False, none_means: str = "") -> None:
    """``getattr(obj, name)`` must be an integer in ``[lo, hi]`` (``>= lo`` without ``hi``), or ``None``
    when ``allow_none`` (``none_means`` is said in the message, e.g. ``"ideal"``)."""
    value = getattr(obj, name)
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or not (lo <= int(value) and (hi is None or int(value) <= hi)):
        extra = (f" or None ({none_means})" if none_means else " or None") if allow_none else ""
        bounds = f"in [{lo}, {hi}]" if hi is not None else f">= {lo}"
        raise ValueError(f"{type(obj).__name__}.{name} = {value!r} must be an integer {bounds}{extra}")
    object.__setattr__(obj, name, int(value))


def check_float(
    obj: object,
    name: str,
    lo: float,
    hi: float,
    unit: str = "",
    *,
    open_low: bool = False,
    allow_inf: bool = False,
) -> None:
    """``getattr(obj, name)`` must be a number in ``[lo, hi]`` (``(lo, hi]`` when ``open_low``), finite
    unless ``allow_inf``; ``unit`` (e.g. ``" s"``) is appended to the numbers in the message."""
    value = getattr(obj, name)
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"{type(obj).__name__}.{name} = {value!r} must be a number{unit}")
    value = float(value)
    low_ok = value > lo if open_low else value >= lo
    finite_ok = not math.isnan(value) and (allow_inf or not math.isinf(value))
    if not finite_ok or not low_ok or value > hi:
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


def check_positive_ints(**values: object) -> None:
    """Every keyword argument must be an integer >= 1 (not a bool): for plain function arguments."""
    for name, value in values.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} = {value!r} must be a positive integer")
