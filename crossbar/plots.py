"""Plots of chip studies (matplotlib is imported only when a plot is made)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np

    from crossbar.characterization import Characterization
    from crossbar.studies import MVMStudyResult

__all__ = ["plot_drift", "plot_error_distributions", "plot_ir_drop_error", "plot_mvm_study"]


def _pyplot():
    import sys

    import matplotlib

    if "matplotlib.pyplot" not in sys.modules:  # keep the backend of a running session (e.g. Jupyter's inline one)
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_mvm_study(result: MVMStudyResult, path: str | Path) -> Path:
    """One panel per sweep: relative MVM error (mean +- std over chips) against the swept value; PNG."""
    plt = _pyplot()
    n = len(result.sweeps)
    cols = min(n, 3)
    rows = -(-n // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.6 * cols, 3.6 * rows), squeeze=False)
    for ax, sw in zip(axes.ravel(), result.sweeps):
        for label, (mean, std) in sw.series.items():
            m, s = list(mean), list(std)
            ax.errorbar(sw.values, m, yerr=s, marker="o", ms=3, capsize=2, label=label)
        if sw.log_x:
            integer_values = all(float(v).is_integer() and v > 0 and (int(v) & (int(v) - 1)) == 0 for v in sw.values)
            ax.set_xscale("log", base=2 if integer_values else 10)
            if integer_values:
                ax.set_xticks(list(sw.values), [f"{int(v)}" for v in sw.values])
        ax.set_yscale("log")
        ax.set_xlabel(f"{sw.name} [{sw.unit}]")
        ax.set_ylabel("relative MVM error")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    for ax in axes.ravel()[n:]:
        ax.axis("off")
    fig.suptitle(f"{result.profile}: {result.size}x{result.size} MVM, batch {result.batch}, {result.repeats} chips per point")
    fig.tight_layout()
    out = Path(path)
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out


def plot_ir_drop_error(g_siemens, g_eff_siemens, path: str | Path, *, title: str | None = None) -> Path:
    """Heat maps of the effective-vs-device conductance error across one tile (IR drop); PNG.

    Left: relative error ``(G_eff - G) / G`` in percent, blank for devices below 2 % of the largest
    conductance (an unused device of a differential pair near 0 S would otherwise set the colour scale with
    its sneak-current share); right: absolute error ``G_eff - G`` in uS. Colour scales span the 1st to 99th
    percentile. Rows are word lines (driver on the left, column 0), columns bit lines (sense
    amplifiers below the last row), as in :mod:`crossbar.irdrop`.

    Parameters
    ----------
    g_siemens, g_eff_siemens : array_like, shape (rows, cols)
        Device conductances and the tile's effective conductances (e.g. a tile block of
        :meth:`crossbar.ProgrammedMatrix.conductances_siemens` and of
        :meth:`crossbar.ProgrammedMatrix.array_conductances_siemens`), S.
    path : str or Path
        Output PNG file.
    """
    import numpy as np

    g = np.asarray(g_siemens, dtype=np.float64)
    ge = np.asarray(g_eff_siemens, dtype=np.float64)
    if g.ndim != 2 or g.shape != ge.shape:
        raise ValueError(f"g_siemens {g.shape} and g_eff_siemens {ge.shape} must be matrices of one shape")
    plt = _pyplot()
    rel = np.full(g.shape, np.nan)
    np.divide(ge - g, g, out=rel, where=g > 0.02 * max(float(g.max()), 0.0))
    fig, axes = plt.subplots(1, 2, figsize=(10.5, 4.4))
    for ax, data, label in ((axes[0], 100.0 * rel, "(G_eff - G) / G [%]"), (axes[1], 1e6 * (ge - g), "G_eff - G [uS]")):
        finite = data[np.isfinite(data)]
        lo, hi = np.percentile(finite, [1, 99]) if finite.size else (None, None)
        im = ax.imshow(data, cmap="viridis", aspect="auto", interpolation="nearest", vmin=lo, vmax=hi)
        ax.set_xlabel("bit line (column)")
        ax.set_ylabel("word line (row)")
        fig.colorbar(im, ax=ax, label=label)
    axes[0].set_title("relative conductance error")
    axes[1].set_title("absolute conductance error")
    fig.suptitle(title or f"IR drop across a {g.shape[0]}x{g.shape[1]} tile (drivers left, sense amplifiers below)")
    fig.tight_layout()
    out = Path(path)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def plot_error_distributions(
    measured: tuple[np.ndarray, np.ndarray],
    path: str | Path,
    *,
    surrogate: tuple[np.ndarray, np.ndarray] | None = None,
    n_bins: int = 8,
    title: str | None = None,
) -> Path:
    """Measured (and surrogate) MVM errors per |W x| bin: std per bin, and the histograms of three bins; PNG.

    ``measured`` and ``surrogate`` are ``(abs_signal, error)`` pairs in normalized units, as returned by
    :func:`crossbar.characterization.normalized_errors` (e.g. of a characterization's raw samples and of
    :func:`crossbar.nn.surrogate_outputs` on the same inputs). Bins hold equal counts of measured samples.
    """
    import numpy as np

    from crossbar.fitting import binned_std

    plt = _pyplot()
    a_m, e_m = (np.asarray(v, dtype=np.float64).ravel() for v in measured)
    edges = np.quantile(a_m, np.linspace(0.0, 1.0, n_bins + 1))
    edges[0], edges[-1] = 0.0, np.inf
    edges = np.maximum.accumulate(edges)
    centers = np.array([np.median(a_m[(a_m >= lo) & (a_m < hi)]) if np.any((a_m >= lo) & (a_m < hi)) else np.nan
                        for lo, hi in zip(edges[:-1], edges[1:])])
    series = [("chip (measured)", a_m, e_m, "C0")]
    if surrogate is not None:
        a_s, e_s = (np.asarray(v, dtype=np.float64).ravel() for v in surrogate)
        series.append(("surrogate", a_s, e_s, "C1"))
    fig, axes = plt.subplots(1, 4, figsize=(17, 3.8))
    for label, a, e, color in series:
        _, _, std = binned_std(a, e, edges)
        axes[0].plot(centers, std, marker="o", ms=4, color=color, label=label)
    axes[0].set_xlabel("|W x| (I_dev per ADC read)")
    axes[0].set_ylabel("error std (I_dev)")
    axes[0].set_title("error std per |W x| bin")
    axes[0].grid(True, alpha=0.3)
    axes[0].legend(fontsize=8)
    for ax, k in zip(axes[1:], (0, n_bins // 2, n_bins - 1)):
        lo, hi = edges[k], edges[k + 1]
        spread = None
        for label, a, e, color in series:
            sel = e[(a >= lo) & (a < hi)]
            if sel.size == 0:
                continue
            spread = spread if spread is not None else max(float(np.std(sel)), 1e-12) * 5
            ax.hist(sel, bins=60, range=(-spread, spread), density=True, histtype="step", color=color, label=label)
        ax.set_title(f"|W x| in [{lo:.3g}, {hi:.3g})" if np.isfinite(hi) else f"|W x| >= {lo:.3g}")
        ax.set_xlabel("error (I_dev)")
        ax.grid(True, alpha=0.3)
    axes[1].set_ylabel("density")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    out = Path(path)
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out


def plot_drift(char: Characterization, path: str | Path) -> Path:
    """Drift over time from a characterization's time sweep: gain with the fitted power law, and the RMS
    total, static and read-to-read errors; PNG. Raises ``ValueError`` without a time sweep."""
    import numpy as np

    sweeps = [m for m in char.matrices if m.time_sweep is not None]
    if not sweeps:
        raise ValueError("plot_drift: the characterization has no time sweep (CharacterizationProtocol.times_sec)")
    plt = _pyplot()
    fig, (ax_g, ax_e) = plt.subplots(1, 2, figsize=(10, 3.8))
    for k, m in enumerate(sweeps):
        sw = m.time_sweep
        assert sw is not None
        color = f"C{k}"
        ax_g.plot(sw.values, sw.gain, "o", color=color, label=f"{m.name} (measured)")
        ax_e.plot(sw.values, sw.rms_total_rel, "o-", color=color, label=f"{m.name}: total")
        ax_e.plot(sw.values, sw.rms_static_rel, "s--", color=color, ms=3, label=f"{m.name}: static (gain removed)")
        ax_e.plot(sw.values, sw.rms_dynamic_rel, "^:", color=color, ms=3, label=f"{m.name}: read-to-read")
    if char.drift is not None:
        t = np.logspace(np.log10(min(s.time_sweep.values[0] for s in sweeps)), np.log10(max(s.time_sweep.values[-1] for s in sweeps)), 100)
        ax_g.plot(t, char.drift.gain(t), "k-", lw=1, label=f"fit: nu = {char.drift.nu:.4f}")
    for ax in (ax_g, ax_e):
        ax.set_xscale("log")
        ax.set_xlabel("time since programming (s)")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    ax_g.set_ylabel("global gain g")
    ax_e.set_ylabel("RMS error (I_dev per ADC read)")
    ax_e.set_yscale("log")
    fig.suptitle(f"{char.profile.name}: drift at T = {char.temperature_kelvin:g} K")
    fig.tight_layout()
    out = Path(path)
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out
