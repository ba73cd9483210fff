"""Make the figures of README.md that do not come from a benchmark module.

Usage: ``python -m benchmarks.readme_figures [--skip-main-job]``. Writes into ``benchmarks/figures/``:

* ``mvm_study_pcm.png``: ``crossbar simulate --profile pcm`` (MVM error vs time, temperature, bits, tile size);
* ``irdrop_heatmap_256.png``: effective-vs-device conductance error of one 256 x 256 PCM tile at 1 ohm per
  wire segment (IR drop);
* ``main_job_accuracy_on_chip.png``, ``main_job_calibration_gap.png`` and ``main_job_summary.md``: the
  main job ``crossbar run`` with its default settings and seed 0 (about 3-5 minutes on 2 cores), run in
  ``results/readme_main_job`` (resumable).

The training figures (``training_*.png``) come from ``python -m benchmarks --only bench_training``.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import numpy as np

FIGURES = Path(__file__).resolve().parent / "figures"


def mvm_study() -> Path:
    from crossbar.plots import plot_mvm_study
    from crossbar.studies import mvm_error_study

    result = mvm_error_study("pcm", size=256, batch=256, repeats=3, seed=0)
    return plot_mvm_study(result, FIGURES / "mvm_study_pcm.png")


def irdrop_heatmap() -> Path:
    from crossbar import Chip, ChipConfig, CircuitConfig, Stages
    from crossbar.plots import plot_ir_drop_error

    config = ChipConfig(stages=Stages.only("ir_drop"), circuit=CircuitConfig(word_line_segment_ohm=1.0, bit_line_segment_ohm=1.0))
    # a nonnegative matrix: every device of the G+ array carries a weight
    m = Chip("pcm", config, seed=0).program(np.abs(np.random.default_rng(0).standard_normal((256, 256))))
    g, g_eff = m.conductances_siemens()[0], m.array_conductances_siemens()[0]
    return plot_ir_drop_error(g, g_eff, FIGURES / "irdrop_heatmap_256.png",
                              title="PCM, 256 x 256 tile (G+ array), 1 ohm per wire segment")


def main_job(results: Path) -> list[Path]:
    from training.pipeline import RunConfig, run_main_job

    run_main_job(RunConfig(), results, argv=["run", "--out", str(results)])
    out = []
    for name in ("accuracy_on_chip.png", "calibration_gap.png", "summary.md"):
        target = FIGURES / f"main_job_{name}"
        shutil.copyfile(results / name, target)
        out.append(target)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.readme_figures", description=__doc__.splitlines()[0])
    parser.add_argument("--skip-main-job", action="store_true", help="only the quick figures")
    parser.add_argument("--results", type=Path, default=Path("results/readme_main_job"), help="folder of the main-job run")
    args = parser.parse_args(argv)
    FIGURES.mkdir(exist_ok=True)
    written = [mvm_study(), irdrop_heatmap()]
    if not args.skip_main_job:
        written += main_job(args.results)
    for p in written:
        print(f"wrote {p}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
