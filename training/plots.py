"""Plots of the noise-robustness study and of chip sweeps (matplotlib is imported only when plotting).

Every function writes one PNG and returns its path.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from training.evaluation import NoiseSweep
from training.study import RunResult

__all__ = ["plot_accuracy_vs_variance", "plot_chip_sweeps", "plot_tradeoff"]


def _pyplot():  # type: ignore[no-untyped-def]
    import sys

    import matplotlib

    if "matplotlib.pyplot" not in sys.modules:  # keep the backend of a running session (e.g. Jupyter's inline one)
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: str | Path) -> Path:  # type: ignore[no-untyped-def]
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    _pyplot().close(fig)
    return out


_MARKERS = "osD^vP*Xh<>p"


def _style(i: int) -> dict:
    """Distinct colour and marker for curve ``i``: the 10 dark tab20 colours, then the 10 light ones."""
    import matplotlib

    k = i % 20
    colour = matplotlib.colormaps["tab20"](2 * k if k < 10 else 2 * (k - 10) + 1)
    return {"color": colour, "marker": _MARKERS[i % len(_MARKERS)]}


def plot_accuracy_vs_variance(
    results: Sequence[RunResult],
    path: str | Path,
    *,
    title: str = "",
    labels: Sequence[str] | None = None,
    zoom: tuple[float, float] | None = (85.0, 100.0),
) -> Path:
    """Test accuracy (mean +- std over draws) vs activation-noise variance, one column per correlation.

    Parameters
    ----------
    results : sequence of RunResult
        One curve per run.
    path : path
        PNG to write.
    title : str
        Figure title.
    labels : sequence of str, optional
        Legend entries (default ``"<name> (clean xx.x%)"``).
    zoom : (low, high), optional
        Adds a second row with the accuracy axis limited to this range, in percent.
    """
    plt = _pyplot()
    if not results:
        raise ValueError("plot_accuracy_vs_variance needs at least one result")
    if labels is not None and len(labels) != len(results):
        raise ValueError(f"{len(labels)} labels for {len(results)} results")
    keys = list(results[0].sweeps)
    rows = 1 if zoom is None else 2
    fig, axes = plt.subplots(rows, len(keys), figsize=(5.8 * len(keys), 4.0 * rows), squeeze=False, sharex=True)
    for col, key in enumerate(keys):
        for row in range(rows):
            ax = axes[row][col]
            for i, r in enumerate(results):
                sw = r.sweeps[key]
                label = labels[i] if labels is not None else f"{r.name} (clean {100 * r.clean_test:.1f}%)"
                ax.errorbar(sw.levels, 100 * sw.mean, yerr=100 * sw.std, ms=3.5, capsize=2, lw=1.2, label=label,
                            **_style(i))
            ax.set_xscale("log")
            ax.grid(True, which="both", alpha=0.3)
            if row == 1 and zoom is not None:
                ax.set_ylim(*zoom)
                ax.set_title(f"{key} noise (zoom)", fontsize=9)
            else:
                ax.set_title(f"{key} noise")
            if row == rows - 1:
                ax.set_xlabel(f"variance v of additive {key} noise on both hidden layers")
            if col == 0:
                ax.set_ylabel("test accuracy [%]")
    axes[0][-1].legend(fontsize=7, loc="lower left")
    if title:
        fig.suptitle(title)
    return _save(fig, path)


def plot_tradeoff(
    curves: Mapping[str, Sequence[RunResult]],
    path: str | Path,
    *,
    correlation: str = "uncorrelated",
    target: tuple[float, float] | None = (0.970, 0.04),
    published: Mapping[str, tuple[float, float]] | None = None,
    replicates: Mapping[str, Sequence[RunResult]] | None = None,
    clean_range: tuple[float, float] | None = None,
    drop_max: float | None = None,
    title: str = "",
) -> Path:
    """Drop at the reference variance vs clean accuracy: one line per method through its strengths.

    Parameters
    ----------
    curves : mapping of method -> results
        Points of each method (sorted by strength for the line).
    path : path
        PNG to write.
    correlation : str
        Which sweep the drop is taken from.
    target : (clean, drop), optional
        Shaded region ``clean >= target[0]`` and ``drop <= target[1]`` (fractions).
    published : mapping of label -> (clean, drop), optional
        Reference points from the literature, as fractions.
    replicates : mapping of method -> results, optional
        Seed replicates of some of a method's points: hollow markers in the method's colour, no line.
    clean_range : (low, high), optional
        Limits of the clean-accuracy axis, in percent (e.g. a zoom on the target region).
    drop_max : float, optional
        Upper limit of the drop axis, in points.
    title : str
        Figure title.
    """
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7.5, 5.4))
    colours = {}
    for method, points in curves.items():
        pts = sorted(points, key=lambda r: r.strength)
        xs = [100 * r.clean_test for r in pts]
        ys = [100 * r.drop(correlation) for r in pts]
        (line,) = ax.plot(xs, ys, ms=4.5, label=method, **_style(len(colours)))
        colours[method] = line.get_color()
        for r, x, y in zip(pts, xs, ys):
            ax.annotate(f"{r.strength:g}", (x, y), fontsize=6, xytext=(3, 3), textcoords="offset points",
                        color=line.get_color())
    for method, points in (replicates or {}).items():
        ax.plot([100 * r.clean_test for r in points], [100 * r.drop(correlation) for r in points], ls="none",
                marker="o", ms=5, mfc="none", color=colours.get(method, "grey"), label=f"{method}: other seeds")
    if target is not None:
        x0, y0 = 100 * target[0], 100 * target[1]
        ax.fill_between([x0, 100.0], [0, 0], [y0, y0], color="green", alpha=0.12,
                        label=f"target: clean >= {x0:.1f}%, drop <= {y0:.0f} pts")
    for label, (clean, drop) in (published or {}).items():
        ax.plot([100 * clean], [100 * drop], marker="*", ms=12, ls="none", color="black")
        ax.annotate(label, (100 * clean, 100 * drop), fontsize=7, xytext=(4, -10), textcoords="offset points")
    first = next((pts[0] for pts in curves.values() if pts), None)
    v = first.reference_variance if first is not None else 1.0
    ax.set_xlabel("clean test accuracy [%]")
    ax.set_ylabel(f"accuracy drop at v = {v:g}, {correlation} noise [points]")
    ax.set_ylim(0, drop_max)
    if clean_range is not None:
        ax.set_xlim(*clean_range)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7)
    ax.set_title(title or "Clean accuracy vs noise-induced drop (each point: one strength; labels: strength)")
    return _save(fig, path)


def plot_chip_sweeps(
    sweeps: Mapping[str, NoiseSweep],
    path: str | Path,
    *,
    xlabel: str,
    log_x: bool = True,
    title: str = "",
) -> Path:
    """Accuracy (mean +- std over chips and reads) vs a chip condition, one curve per model."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    for i, (label, sw) in enumerate(sweeps.items()):
        ax.errorbar(sw.levels, 100 * sw.mean, yerr=100 * sw.std, ms=3.5, capsize=2, label=label, **_style(i))
    if log_x:
        ax.set_xscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("test accuracy on the chip [%]")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7)
    if title:
        ax.set_title(title, fontsize=9)
    return _save(fig, path)
