"""Validation helpers for the frozen parameter groups of ``training``.

Every check raises :class:`ValueError` whose one-line message names the class, the field and the value.
Numbers are coerced to ``float``/``int`` in place (``object.__setattr__`` on the frozen instance).
"""

from __future__ import annotations

from crossbar._checks import check_enum, check_float, check_int, check_optional_instance, check_positive_ints

__all__ = ["check_enum", "check_float", "check_int", "check_optional_instance", "check_positive_ints"]
