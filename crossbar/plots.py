"""Plots of chip studies (matplotlib is imported only when a plot is made)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from crossbar.studies import MVMStudyResult

__all__ = ["plot_mvm_study"]


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
