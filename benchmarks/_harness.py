"""The benchmark record format and timing helpers shared by every benchmark module.

A benchmark module exposes ``run(quick: bool) -> list[Record]``. Speed records time the thing and a
baseline in the same run and report ``ratio = value / baseline_value``; accuracy or error records give
the metric in ``value`` and leave the baseline fields ``None``. Record names are stable once published.
"""

from __future__ import annotations

import gc
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable

__all__ = ["Record", "speed_record", "time_call"]


@dataclass(frozen=True, kw_only=True)
class Record:
    """One line of ``benchmarks/results.json``."""

    name: str
    """Stable identifier, e.g. ``"mvm_512_b1024_noise_adc"``."""
    value: float
    """The measurement (seconds for speed records; the metric itself for accuracy/error records)."""
    unit: str
    """Unit of ``value``, e.g. ``"s"``, ``"rel_error"``, ``"accuracy"``, ``"bytes"``."""
    baseline: str | None = None
    """What ``value`` is compared against, measured in the same run (e.g. ``"numpy float32 GEMM"``)."""
    baseline_value: float | None = None
    """The baseline's measurement in the same unit as ``value``."""
    ratio: float | None = None
    """``value / baseline_value``."""
    target: float | None = None
    """The target for ``ratio`` (speed records) or for ``value`` (other records), if the issue set one."""
    meets_target: bool | None = None
    """Whether the target is met (``None`` when there is no target)."""
    params: dict[str, Any] = field(default_factory=dict)
    """Shapes, settings and anything needed to reproduce the number."""

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def time_call(fn: Callable[[], Any], *, repeats: int = 7, min_time_sec: float = 0.2) -> float:
    """Median wall time of ``fn()`` in seconds, after one warm-up call.

    Each of ``repeats`` samples runs ``fn`` enough times to last about ``min_time_sec`` and is divided
    by that count, so fast calls are not dominated by timer resolution.
    """
    fn()  # warm-up: JIT compilation, caches, allocator
    t0 = time.perf_counter()
    fn()
    single = max(time.perf_counter() - t0, 1e-7)
    inner = max(1, int(min_time_sec / single))
    samples = []
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        for _ in range(repeats):
            t0 = time.perf_counter()
            for _ in range(inner):
                fn()
            samples.append((time.perf_counter() - t0) / inner)
    finally:
        if gc_was_enabled:
            gc.enable()
    samples.sort()
    return samples[len(samples) // 2]


def speed_record(
    name: str,
    fn: Callable[[], Any],
    baseline_name: str,
    baseline_fn: Callable[[], Any],
    *,
    target: float | None,
    params: dict[str, Any],
    repeats: int = 7,
) -> Record:
    """Time ``fn`` and ``baseline_fn`` alternately in one run and build a ratio record (lower is better)."""
    # Interleave the two so slow drifts of the machine (thermal, other load) hit both alike.
    values, bases = [], []
    for _ in range(3):
        bases.append(time_call(baseline_fn, repeats=repeats))
        values.append(time_call(fn, repeats=repeats))
    value, base = sorted(values)[1], sorted(bases)[1]
    ratio = value / base
    return Record(
        name=name,
        value=value,
        unit="s",
        baseline=baseline_name,
        baseline_value=base,
        ratio=ratio,
        target=target,
        meets_target=None if target is None else bool(ratio <= target),
        params=params,
    )
