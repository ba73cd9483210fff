"""Plots of chip studies (matplotlib is imported only when a plot is made)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from crossbar.studies import MVMStudyResult

__all__ = ["plot_ir_drop_error", "plot_mvm_study"]


def _pyplot():
    import matplotlib

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

    Left: relative error ``(G_eff - G) / G`` in percent (blank where ``G = 0``); right: absolute error
    ``G_eff - G`` in uS. Rows are word lines (driver on the left, column 0), columns bit lines (sense
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
    np.divide(ge - g, g, out=rel, where=g > 0)
    fig, axes = plt.subplots(1, 2, figsize=(10.5, 4.4))
    for ax, data, label in ((axes[0], 100.0 * rel, "(G_eff - G) / G [%]"), (axes[1], 1e6 * (ge - g), "G_eff - G [uS]")):
        im = ax.imshow(data, cmap="viridis", aspect="auto", interpolation="nearest")
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
