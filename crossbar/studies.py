"""MVM error studies of a device profile: how each effect changes the result of a matrix-vector multiply.

The error of a chip MVM is measured against the exact product on random weights and inputs::

    e = ||y_chip - y_ideal||_F / ||y_ideal||_F      (relative RMS error over a batch)

Sweeps: time since programming (with and without global drift compensation), temperature, converter
bits, tile size and, when a circuit configuration is available, wire resistance. Each sweep point
programs a fresh chip with the same seed, so the device draws are common to all points of a sweep.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from crossbar._checks import check_positive_ints
from crossbar.chip import Chip
from crossbar.config import ChipConfig, DACConfig, Stages
from crossbar.profiles import DeviceProfile, load_profile

__all__ = ["MVMStudyResult", "Sweep", "mvm_error_study", "relative_error"]

SECONDS_PER_YEAR = 365.25 * 24 * 3600.0


def relative_error(y: np.ndarray, y_ideal: np.ndarray) -> float:
    """``||y - y_ideal|| / ||y_ideal||`` (Frobenius norms); ``inf`` if the ideal output is all zero."""
    denom = float(np.linalg.norm(y_ideal))
    return float(np.linalg.norm(np.asarray(y, dtype=np.float64) - y_ideal)) / denom if denom > 0 else float("inf")


@dataclass(frozen=True, kw_only=True)
class Sweep:
    """One swept parameter: its values and the relative MVM error at each (mean and std over repeats)."""

    name: str
    """What is swept, e.g. ``"time_sec"``."""
    unit: str
    """Unit of the swept values."""
    values: tuple[float, ...]
    """The swept values."""
    series: dict[str, tuple[tuple[float, ...], tuple[float, ...]]]
    """Label -> (mean error per value, std of the error over repeats per value)."""
    log_x: bool = False
    """Whether the values are best shown on a log axis."""


@dataclass(frozen=True, kw_only=True)
class MVMStudyResult:
    """The sweeps of one study and the settings that produced them."""

    profile: str
    """Profile name."""
    size: int
    """W is size x size."""
    batch: int
    """Input vectors per measurement."""
    repeats: int
    """Chips (seeds) averaged per point."""
    seed: int
    sweeps: list[Sweep] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def table_markdown(self) -> str:
        """A markdown table per sweep: value, then mean +- std of the error per series."""
        lines = []
        for sw in self.sweeps:
            labels = list(sw.series)
            lines.append(f"**{sw.name}** ({sw.unit})\n")
            lines.append("| " + " | ".join([sw.name] + labels) + " |")
            lines.append("|" + "---|" * (len(labels) + 1))
            for k, v in enumerate(sw.values):
                cells = [f"{v:g}"] + [f"{sw.series[l][0][k]:.4f} ± {sw.series[l][1][k]:.4f}" for l in labels]
                lines.append("| " + " | ".join(cells) + " |")
            lines.append("")
        return "\n".join(lines)


def _measure(
    profile: DeviceProfile,
    config: ChipConfig,
    w: np.ndarray,
    x: np.ndarray,
    y_ideal: np.ndarray,
    seeds: list[int],
    **read: Any,
) -> tuple[float, float]:
    errors = [relative_error(Chip(profile, config, seed=s).program(w).matvec(x, **read), y_ideal) for s in seeds]
    return float(np.mean(errors)), float(np.std(errors))


def mvm_error_study(
    profile: DeviceProfile | str,
    *,
    config: ChipConfig | None = None,
    size: int = 256,
    batch: int = 256,
    repeats: int = 3,
    seed: int = 0,
    times_sec: tuple[float, ...] | None = None,
    temperatures_kelvin: tuple[float, ...] = (250.0, 275.0, 300.0, 325.0, 350.0, 375.0, 400.0),
    bits: tuple[int, ...] = (2, 3, 4, 5, 6, 7, 8, 10, 12),
    tile_sizes: tuple[int, ...] = (32, 64, 128, 256, 512),
    extra_sweeps: tuple[Callable[..., Sweep], ...] = (),
    progress: Callable[[str], None] | None = None,
) -> MVMStudyResult:
    """Relative MVM error of a profile versus time, temperature, converter bits and tile size.

    Parameters
    ----------
    profile : DeviceProfile or str
        The device technology.
    config : ChipConfig, optional
        The chip around the devices (default ``ChipConfig()``: every stage on, 8-bit converters).
    size, batch : int
        W is ``size x size`` with standard-normal entries; ``batch`` standard-normal input vectors.
    repeats : int
        Chips with different seeds per point (mean and std are reported).
    seed : int
        Seed of the weights, inputs and the first chip.
    times_sec, temperatures_kelvin, bits, tile_sizes : tuples
        The sweeps (``times_sec`` default: log-spaced from 1 s to 1 year).
    extra_sweeps : tuple of callables
        More sweeps, each called as ``f(profile=, config=, w=, x=, y_ideal=, seeds=)`` returning a Sweep.
    progress : callable, optional
        Called with a short description before each sweep.

    Returns
    -------
    MVMStudyResult
    """
    prof = profile if isinstance(profile, DeviceProfile) else load_profile(profile)
    cfg = config if config is not None else ChipConfig()
    check_positive_ints(size=size, batch=batch, repeats=repeats)
    rng = np.random.default_rng(seed)
    w = rng.standard_normal((size, size))
    x = rng.standard_normal((batch, size))
    y_ideal = x @ w.T
    seeds = [seed + k for k in range(repeats)]
    times = times_sec if times_sec is not None else tuple(np.logspace(0, np.log10(SECONDS_PER_YEAR), 9).round(1))
    result = MVMStudyResult(profile=prof.name, size=size, batch=batch, repeats=repeats, seed=seed)
    say = progress or (lambda _msg: None)

    say("time since programming")
    comp = dataclasses.replace(cfg, stages=dataclasses.replace(cfg.stages, drift_compensation=True))
    nocomp = dataclasses.replace(cfg, stages=dataclasses.replace(cfg.stages, drift_compensation=False))
    series_t = {}
    for label, c in (("no compensation", nocomp), ("global drift compensation", comp)):
        stats = [_measure(prof, c, w, x, y_ideal, seeds, time_sec=t) for t in times]
        series_t[label] = (tuple(m for m, _ in stats), tuple(s for _, s in stats))
    result.sweeps.append(Sweep(name="time_sec", unit="s", values=tuple(float(t) for t in times), series=series_t, log_x=True))

    say("temperature")
    stats = [_measure(prof, comp, w, x, y_ideal, seeds, time_sec=3600.0, temperature_kelvin=T) for T in temperatures_kelvin]
    result.sweeps.append(
        Sweep(
            name="temperature_kelvin",
            unit="K",
            values=tuple(float(T) for T in temperatures_kelvin),
            series={"t = 1 h, drift compensation": (tuple(m for m, _ in stats), tuple(s for _, s in stats))},
        )
    )

    say("converter bits")
    series_b = {}
    only_conv = Stages.only("dac", "adc")
    for label, make in (
        ("DAC and ADC only", lambda b: dataclasses.replace(cfg, dac=DACConfig(bits=b), adc=dataclasses.replace(cfg.adc, bits=b), stages=only_conv)),
        ("all stages", lambda b: dataclasses.replace(cfg, dac=dataclasses.replace(cfg.dac, bits=b), adc=dataclasses.replace(cfg.adc, bits=b))),
    ):
        stats = [_measure(prof, make(b), w, x, y_ideal, seeds) for b in bits]
        series_b[label] = (tuple(m for m, _ in stats), tuple(s for _, s in stats))
    result.sweeps.append(Sweep(name="converter_bits", unit="bits", values=tuple(float(b) for b in bits), series=series_b))

    say("tile size")
    stats = [
        _measure(prof, dataclasses.replace(cfg, tile=dataclasses.replace(cfg.tile, rows=t, cols=t)), w, x, y_ideal, seeds)
        for t in tile_sizes
    ]
    result.sweeps.append(
        Sweep(
            name="tile_size",
            unit="rows = cols",
            values=tuple(float(t) for t in tile_sizes),
            series={"all stages": (tuple(m for m, _ in stats), tuple(s for _, s in stats))},
            log_x=True,
        )
    )
    for extra in extra_sweeps:
        say(getattr(extra, "__name__", "extra sweep"))
        result.sweeps.append(extra(profile=prof, config=cfg, w=w, x=x, y_ideal=y_ideal, seeds=seeds))
    return result

