"""The main job: characterize a chip, train a standard and a robust network against it, evaluate both on it.

``crossbar run`` calls :func:`run_main_job`. On the embedded MNIST subset (no download) it

1. characterizes a chip of a shipped profile (probe matrices, drift and temperature sweeps) into
   ``characterization.h5`` and fits the differentiable surrogate (:mod:`crossbar.characterization`);
2. trains two networks with the calibration loop (:mod:`training.calibration`), starting from that
   surrogate: a *standard* one (plain cross-entropy) and a *robust* one (a robustness recipe of
   :mod:`training`, noise-aware training with the explainable regularizers by default);
3. evaluates both on fresh programmings of the chip: accuracy vs time since programming (1 s to 1 year,
   with and without global drift compensation), vs temperature, vs the device-noise level of the profile
   and vs activation noise on the hidden layers, with repeated draws;
4. writes the results folder: HDF5 (characterization, evaluation sweeps, the programmed chip state of
   each model), PNG plots, ``summary.md`` with the table, and ``run_config.json`` with the full
   configuration and seed, so the run can be repeated exactly.

Every step is resumable: training checkpoints every epoch, the characterization and the evaluation are
kept once written (atomically), and a rerun with the same configuration into the same folder continues
where an interruption left off; a different configuration is refused.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import math
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from crossbar import Chip, ChipConfig, __version__
from crossbar.characterization import CharacterizationProtocol, characterize
from crossbar.characterization_io import read_characterization, write_characterization
from crossbar.config import config_from_dict, config_to_dict
from crossbar.hdf5io import atomic_h5, write_array
from training._atomic import write_text_atomic
from training._checks import check_enum, check_float, check_int
from training.activations import ActivationKind
from training.calibration import CalibrationConfig, CalibrationResult, train_with_calibration
from training.chip_eval import (
    chip_accuracy_vs_temperature,
    chip_accuracy_vs_time,
    chip_weight_noise_sweep,
    log_spaced_times,
)
from training.datasets import Dataset, DatasetSplits, load_embedded_mnist, load_fashion_mnist, load_mnist
from training.evaluation import NoiseSweep, evaluate_accuracy, log_spaced_variances, noise_sweep
from training.models import MLP
from training.noise import ActivationNoise, NoiseCorrelation
from training.physics_loss import PhysicsInformedLoss, prior_from_pi_hw
from training.study import DUQUE_BOTH, vant_config
from training.trainer import LRSchedule, Recipe, TrainConfig

__all__ = [
    "DatasetKind",
    "EvaluationConfig",
    "Method",
    "ModelEvaluation",
    "RUN_FORMAT",
    "RunConfig",
    "RunSummary",
    "evaluate_on_chip",
    "load_dataset",
    "load_trained_mlp",
    "recipe_for",
    "run_main_job",
    "save_trained_mlp",
    "write_evaluation",
]

RUN_FORMAT = 1
"""Version of ``run_config.json`` and of the results layout."""

class DatasetKind(enum.Enum):
    """Which data a run uses."""

    EMBEDDED_MNIST = "embedded_mnist"
    """The class-balanced real MNIST subset shipped in the package (10000 train, 2000 test; no download)."""
    MNIST = "mnist"
    """MNIST IDX files from ``data_dir``."""
    FASHION_MNIST = "fashion_mnist"
    """Fashion-MNIST IDX files from ``data_dir``."""


class Method(enum.Enum):
    """Robustness recipes of ``crossbar train`` and of the main job; ``strength`` is each one's knob."""

    STANDARD = "standard"
    """Plain cross-entropy (strength unused)."""
    NOISE_AWARE = "noise_aware"
    """Additive uncorrelated activation noise of variance ``strength`` on the hidden layers during training."""
    EXPLAINABLE = "explainable"
    """The explainable regularizers of Duque et al. (2024) against uncorrelated and correlated noise
    (:data:`training.study.DUQUE_BOTH`) scaled by ``strength``."""
    NOISE_AWARE_EXPLAINABLE = "noise_aware_explainable"
    """Both: noise of variance ``strength`` and the regularizers at their published weights."""
    VANT = "vant"
    """VANT: per-sample activation-noise std ``0.5 s + 0.75 s |z|``, s = ``sqrt(strength)``
    (:func:`training.study.vant_config`)."""
    PHYSICS_INFORMED = "physics_informed"
    """The physics-informed loss with ``pi_hw`` measured on the chip (a characterization's level occupancy):
    weights kept in [-1, 1] (lambda_1 = 1) and ``strength`` x KL(soft hist(Q_b(W)) || pi_hw) (lambda_2), Q_b at
    the characterization's grid resolution. Needs the characterization (``pi_hw=`` of :func:`recipe_for`)."""


def recipe_for(method: Method | str, strength: float, *, pi_hw: Any | None = None) -> Recipe:
    """The :class:`~training.trainer.Recipe` of a :class:`Method` at a strength (see each member).

    ``pi_hw`` (a :class:`crossbar.fitting.PiHW`, e.g. ``Characterization.pi_hw``) is the measured level
    occupancy that :attr:`Method.PHYSICS_INFORMED` matches; the other methods ignore it.
    """
    method = Method(method)
    if isinstance(strength, bool) or not isinstance(strength, (int, float)) or not (math.isfinite(strength) and strength >= 0):
        raise ValueError(f"strength = {strength!r} must be a finite number >= 0")
    if method is Method.PHYSICS_INFORMED:
        if pi_hw is None:
            raise ValueError("method 'physics_informed' needs pi_hw from a characterization of the chip (--characterization FILE)")
        physics = PhysicsInformedLoss(lambda_clip=1.0, lambda_kl=float(strength), w_max=1.0, bits=int(pi_hw.bits))
        return Recipe(physics=physics, prior=prior_from_pi_hw(pi_hw, w_max=physics.w_max))
    if method is Method.STANDARD:
        return Recipe()
    if method is Method.NOISE_AWARE:
        return Recipe(train_noise=(ActivationNoise(variance=float(strength)),))
    if method is Method.EXPLAINABLE:
        return Recipe(explainable=DUQUE_BOTH.scaled(float(strength)))
    if method is Method.NOISE_AWARE_EXPLAINABLE:
        return Recipe(train_noise=(ActivationNoise(variance=float(strength)),), explainable=DUQUE_BOTH)
    return Recipe(vant=vant_config(math.sqrt(float(strength))))


def load_dataset(kind: DatasetKind | str, data_dir: str | os.PathLike[str] | None) -> DatasetSplits:
    """The train and test splits of a :class:`DatasetKind` (``data_dir`` for file-based kinds)."""
    kind = DatasetKind(kind)
    if kind is DatasetKind.EMBEDDED_MNIST:
        return load_embedded_mnist()
    if data_dir is None:
        raise ValueError(f"dataset {kind.value!r} needs a data directory (--data DIR)")
    return load_mnist(data_dir) if kind is DatasetKind.MNIST else load_fashion_mnist(data_dir)


@dataclass(frozen=True, kw_only=True)
class EvaluationConfig:
    """What the main job measures on the chip after training."""

    n_times: int = 7
    """Times since programming, log-spaced from ``t_min_sec`` to one year."""
    t_min_sec: float = 1.0
    """First time of the drift sweep, s."""
    temperatures_kelvin: tuple[float, ...] = (275.0, 300.0, 325.0, 350.0)
    """Temperatures of the temperature sweep, K (read one day after programming)."""
    noise_factors: tuple[float, ...] = (0.0, 1.0, 2.0, 4.0, 8.0)
    """Scales of the profile's device-noise stds (0: no programming, mismatch or read noise)."""
    activation_variances: tuple[float, ...] = tuple(log_spaced_variances(1e-3, 1.0, 7))
    """Variances of additive activation noise on the hidden layers, evaluated on the chip."""
    n_chips: int = 3
    """Programmings of the chip per point."""
    n_reads: int = 2
    """Reads (fresh read noise) per programming and point."""
    n_test: int | None = None
    """Test samples scored (``None``: the whole test split)."""

    def __post_init__(self) -> None:
        check_int(self, "n_times", 1, 1000)
        check_float(self, "t_min_sec", 1e-9, 3.15e7, open_low=True)
        for name in ("temperatures_kelvin", "noise_factors", "activation_variances"):
            values = tuple(float(v) for v in getattr(self, name))
            if not values or any(not math.isfinite(v) or v < 0 for v in values):
                raise ValueError(f"EvaluationConfig.{name} = {getattr(self, name)!r} must be a non-empty tuple of finite numbers >= 0")
            object.__setattr__(self, name, values)
        if any(t <= 0 for t in self.temperatures_kelvin):
            raise ValueError(f"EvaluationConfig.temperatures_kelvin = {self.temperatures_kelvin!r} K must be > 0 K")
        check_int(self, "n_chips", 1, 1000)
        check_int(self, "n_reads", 1, 1000)
        if self.n_test is not None:
            check_int(self, "n_test", 1, 1 << 30)


@dataclass(frozen=True, kw_only=True)
class RunConfig:
    """Everything that defines a run of the main job (saved as ``run_config.json``)."""

    profile: str = "pcm"
    """Shipped profile name or path to a TOML profile."""
    chip: ChipConfig = field(default_factory=ChipConfig)
    """Tiles, converters, stages of the chip (its activation must be the identity)."""
    dataset: DatasetKind = DatasetKind.EMBEDDED_MNIST
    """Which data."""
    data_dir: str | None = None
    """Directory of the data files (file-based datasets)."""
    n_train: int | None = None
    """Training samples used (``None``: all)."""
    hidden: tuple[int, ...] = (300, 300)
    """Hidden widths of the MLP (inputs 784, outputs 10)."""
    activation: ActivationKind = ActivationKind.SIGMOID
    """Hidden activation."""
    epochs: int = 8
    """Training epochs of each model."""
    batch_size: int = 128
    """Samples per step."""
    learning_rate: float = 1e-2
    """Adam step size (cosine-decayed)."""
    robust_method: Method = Method.NOISE_AWARE_EXPLAINABLE
    """Recipe of the robust model."""
    robust_strength: float = 0.3
    """Strength of the robust recipe (:class:`Method`); 0.3 is the study's best noise-aware + explainable
    point on MNIST (96.4 % clean, 4.2 points lost at activation-noise variance 1, none under correlated noise)."""
    calibration: CalibrationConfig = field(default_factory=lambda: CalibrationConfig(period_epochs=2, n_inputs=2048))
    """Calibration loop of both trainings."""
    characterization_inputs: int = 4096
    """Input vectors per probe matrix of the initial characterization."""
    evaluation: EvaluationConfig = field(default_factory=EvaluationConfig)
    """Sweeps on the chip after training."""
    seed: int = 0
    """Seed of the chip, the initial weights, the data order and every noise draw."""

    def __post_init__(self) -> None:
        if not isinstance(self.profile, str) or not self.profile:
            raise ValueError(f"RunConfig.profile = {self.profile!r} must be a profile name or path")
        if not isinstance(self.chip, ChipConfig):
            raise ValueError(f"RunConfig.chip must be a ChipConfig, got {type(self.chip).__name__}")
        check_enum(self, "dataset", DatasetKind)
        if self.data_dir is not None and not isinstance(self.data_dir, str):
            object.__setattr__(self, "data_dir", str(self.data_dir))
        if self.n_train is not None:
            check_int(self, "n_train", 1, 1 << 30)
        hidden = tuple(self.hidden)
        if not hidden or any(isinstance(h, bool) or not isinstance(h, int) or h < 1 for h in hidden):
            raise ValueError(f"RunConfig.hidden = {self.hidden!r} must be a non-empty tuple of positive integers")
        object.__setattr__(self, "hidden", hidden)
        check_enum(self, "activation", ActivationKind)
        check_int(self, "epochs", 1, 100_000)
        check_int(self, "batch_size", 1, 1 << 20)
        check_float(self, "learning_rate", 0.0, 10.0, open_low=True)
        check_enum(self, "robust_method", Method)
        check_float(self, "robust_strength", 0.0, 1e6)
        if not isinstance(self.calibration, CalibrationConfig):
            raise ValueError("RunConfig.calibration must be a CalibrationConfig")
        check_int(self, "characterization_inputs", 2, 1 << 30)
        if not isinstance(self.evaluation, EvaluationConfig):
            raise ValueError("RunConfig.evaluation must be an EvaluationConfig")
        check_int(self, "seed", 0, (1 << 63) - 1)

    @classmethod
    def quick(cls, **changes: Any) -> RunConfig:
        """Small settings for a smoke run in well under a minute (tests, ``crossbar run --quick``)."""
        base = cls(
            n_train=640,
            hidden=(32,),
            epochs=2,
            calibration=CalibrationConfig(period_epochs=1, n_inputs=1600, n_repeats=2, gap_samples=200, gap_draws=1),
            characterization_inputs=512,
            evaluation=EvaluationConfig(n_times=3, temperatures_kelvin=(300.0, 340.0), noise_factors=(0.0, 1.0, 4.0),
                                        activation_variances=(1e-2, 1.0), n_chips=1, n_reads=1, n_test=200),
        )
        return dataclasses.replace(base, **changes)

    # ------------------------------------------------------------------ plain-dict form
    def to_dict(self) -> dict[str, Any]:
        """JSON/TOML-serializable dict (enums as values)."""
        ev = self.evaluation
        return {
            "profile": self.profile,
            "chip": config_to_dict(self.chip),
            "dataset": self.dataset.value,
            "data_dir": self.data_dir,
            "n_train": self.n_train,
            "hidden": list(self.hidden),
            "activation": self.activation.value,
            "epochs": self.epochs,
            "batch_size": self.batch_size,
            "learning_rate": self.learning_rate,
            "robust_method": self.robust_method.value,
            "robust_strength": self.robust_strength,
            "calibration": self.calibration.to_dict(),
            "characterization_inputs": self.characterization_inputs,
            "evaluation": {
                "n_times": ev.n_times, "t_min_sec": ev.t_min_sec, "temperatures_kelvin": list(ev.temperatures_kelvin),
                "noise_factors": list(ev.noise_factors), "activation_variances": list(ev.activation_variances),
                "n_chips": ev.n_chips, "n_reads": ev.n_reads, "n_test": ev.n_test,
            },
            "seed": self.seed,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, base: RunConfig | None = None, origin: str = "run configuration") -> RunConfig:
        """A config from :meth:`to_dict` output or a TOML table; missing keys come from ``base``."""
        if not isinstance(data, dict):
            raise ValueError(f"{origin}: must be a table")
        base = cls() if base is None else base
        known = set(base.to_dict())
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"{origin}: unknown key {sorted(unknown)[0]!r} (expected one of {', '.join(sorted(known))})")
        kw: dict[str, Any] = {}
        for key, value in data.items():
            if key == "chip":
                kw["chip"] = config_from_dict(value, origin=f"{origin} [chip]")
            elif key == "calibration":
                table = {**base.calibration.to_dict(), **_table(value, origin, "calibration")}
                kw["calibration"] = _build(CalibrationConfig, table, origin, "calibration")
            elif key == "evaluation":
                current = dataclasses.asdict(base.evaluation)
                table = {**current, **_table(value, origin, "evaluation")}
                for name in ("temperatures_kelvin", "noise_factors", "activation_variances"):
                    table[name] = tuple(table[name])
                kw["evaluation"] = _build(EvaluationConfig, table, origin, "evaluation")
            elif key == "hidden":
                kw["hidden"] = tuple(value)
            else:
                kw[key] = value
        try:
            return dataclasses.replace(base, **kw)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{origin}: {exc}") from None


def _table(value: Any, origin: str, name: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ValueError(f"{origin}: [{name}] must be a table")
    return value


def _build(cls: type, table: dict[str, Any], origin: str, name: str) -> Any:
    allowed = {f.name for f in dataclasses.fields(cls)}
    for key in table:
        if key not in allowed:
            raise ValueError(f"{origin}: unknown key {key!r} in [{name}] (expected one of {', '.join(sorted(allowed))})")
    try:
        return cls(**table)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{origin}: {exc}") from None


@dataclass
class ModelEvaluation:
    """The sweeps of one trained model on the chip."""

    clean_digital: float
    """Accuracy of the digital network (no chip)."""
    time: NoiseSweep
    """Accuracy vs time since programming (no drift compensation)."""
    time_compensated: NoiseSweep
    """Accuracy vs time since programming with global drift compensation."""
    temperature: NoiseSweep
    """Accuracy vs temperature, one day after programming."""
    device_noise: NoiseSweep
    """Accuracy vs the scale of the profile's device-noise stds."""
    activation_noise: NoiseSweep
    """Accuracy vs additive uncorrelated activation-noise variance, on the chip."""
    activation_noise_correlated: NoiseSweep
    """Accuracy vs additive correlated activation-noise variance, on the chip."""

    def sweeps(self) -> dict[str, NoiseSweep]:
        return {
            "time": self.time,
            "time_compensated": self.time_compensated,
            "temperature": self.temperature,
            "device_noise": self.device_noise,
            "activation_noise": self.activation_noise,
            "activation_noise_correlated": self.activation_noise_correlated,
        }


@dataclass
class RunSummary:
    """What :func:`run_main_job` returns (and writes)."""

    out_dir: Path
    """The results folder."""
    config: RunConfig
    """The run's configuration."""
    evaluations: dict[str, ModelEvaluation]
    """``"standard"`` and ``"robust"`` evaluations."""
    trainings: dict[str, CalibrationResult]
    """The calibration-loop results of both models."""
    files: list[Path]
    """Every file written, relative to ``out_dir``."""
    wall_time_sec: float
    """Duration of this invocation, s."""


def _check_run_dir(out: Path, config: RunConfig, argv: list[str] | None) -> None:
    """Create the folder and its ``run_config.json``, or check that an existing one is this run."""
    out.mkdir(parents=True, exist_ok=True)
    path = out / "run_config.json"
    record = {"format": RUN_FORMAT, "package_version": __version__, "config": config.to_dict()}
    if path.exists():
        try:
            old = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise ValueError(f"{path}: unreadable ({exc}); remove the folder or choose another --out") from None
        if old.get("format") != RUN_FORMAT or old.get("config") != record["config"]:
            raise ValueError(f"{out}: holds a run with another configuration; choose another --out to start a new run")
        return
    record["argv"] = list(sys.argv[1:] if argv is None else argv)
    record["python"] = sys.version.split()[0]
    record["torch"] = torch.__version__
    write_text_atomic(path, json.dumps(record, indent=2) + "\n")


def _say(log: Callable[[str], None] | None, message: str) -> None:
    if log is not None:
        log(message)


def _evaluate(model: torch.nn.Module, test: Dataset, chip: Chip, ev: EvaluationConfig, seed: int) -> ModelEvaluation:
    from crossbar.nn import convert_to_analog, program_analog

    times = log_spaced_times(ev.t_min_sec, 365.25 * 86400.0, ev.n_times)
    common = dict(n_chips=ev.n_chips, n_reads=ev.n_reads)
    day = 86400.0
    analog = convert_to_analog(model, Chip(chip.profile, chip.config, seed=chip.seed), inplace=False)
    program_analog(analog)
    gen = torch.Generator().manual_seed(seed)
    variances = ev.activation_variances
    return ModelEvaluation(
        clean_digital=evaluate_accuracy(model, test),
        time=chip_accuracy_vs_time(model, test, chip, times_sec=times, drift_compensation=False, **common),
        time_compensated=chip_accuracy_vs_time(model, test, chip, times_sec=times, drift_compensation=True, **common),
        temperature=chip_accuracy_vs_temperature(model, test, chip, temperatures_kelvin=ev.temperatures_kelvin, time_sec=day, **common),
        device_noise=chip_weight_noise_sweep(model, test, chip, factors=ev.noise_factors, **common),
        activation_noise=noise_sweep(analog, test, variances=variances, n_draws=ev.n_chips * ev.n_reads, generator=gen),
        activation_noise_correlated=noise_sweep(
            analog, test, variances=variances, correlation=NoiseCorrelation.CORRELATED, n_draws=ev.n_chips * ev.n_reads, generator=gen,
        ),
    )


_SWEEP_UNITS = {
    "time": "s",
    "time_compensated": "s",
    "temperature": "K",
    "device_noise": "1",
    "activation_noise": "1",
    "activation_noise_correlated": "1",
}


def _write_evaluation_h5(path: Path, chip: Chip, config: RunConfig, evaluations: dict[str, ModelEvaluation]) -> None:
    with atomic_h5(path, file_kind="evaluation", schema_version=RUN_FORMAT, profile=chip.profile, config=chip.config,
                   seed=config.seed, attrs={"run_config_json": json.dumps(config.to_dict())}) as fh:
        for name, ev in evaluations.items():
            g = fh.create_group(name)
            g.attrs["clean_digital_accuracy"] = ev.clean_digital
            for key, sweep in ev.sweeps().items():
                s = g.create_group(key)
                s.attrs["label"] = sweep.label
                write_array(s, "levels", np.asarray(sweep.levels), units=_SWEEP_UNITS[key], description=sweep.label)
                write_array(s, "accuracy", sweep.accuracies, units="1",
                            description="accuracy per level (rows) and draw (columns: chips x reads)")


def _plot(evaluations: dict[str, ModelEvaluation], trainings: dict[str, CalibrationResult], out: Path) -> list[Path]:
    import matplotlib

    if "matplotlib.pyplot" not in sys.modules:  # keep the backend of a running session (e.g. Jupyter's inline one)
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [
        ("time", "time since programming (s)", True, "drift, no compensation"),
        ("time_compensated", "time since programming (s)", True, "drift, global compensation"),
        ("temperature", "temperature (K)", False, "temperature (read after 1 day)"),
        ("device_noise", "device-noise scale (x profile)", False, "device noise"),
        ("activation_noise", "activation-noise variance", True, "activation noise, uncorrelated"),
        ("activation_noise_correlated", "activation-noise variance", True, "activation noise, correlated"),
    ]
    fig, axes = plt.subplots(2, 3, figsize=(14, 7.5))
    for ax, (key, xlabel, logx, title) in zip(axes.ravel(), panels):
        for name, ev in evaluations.items():
            sw = ev.sweeps()[key]
            ax.errorbar(sw.levels, 100 * sw.mean, yerr=100 * sw.std, marker="o", ms=3, capsize=2, label=name)
        if logx:
            ax.set_xscale("log")
        ax.set_xlabel(xlabel)
        ax.set_ylabel("accuracy on the chip (%)")
        ax.set_title(title, fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    p1 = out / "accuracy_on_chip.png"
    fig.savefig(p1, dpi=110)
    plt.close(fig)
    if not trainings:
        return [p1]

    fig, ax = plt.subplots(figsize=(6.5, 4))
    for name, res in trainings.items():
        rows = [r for r in res.records if r.chip_accuracy is not None]
        ep = [r.epoch for r in rows]
        ax.plot(ep, [100 * r.chip_accuracy for r in rows], "o-", label=f"{name}: chip")
        if any(r.surrogate_accuracy is not None for r in rows):
            ax.plot(ep, [100 * r.surrogate_accuracy for r in rows], "s--", label=f"{name}: surrogate")
    ax.set_xlabel("epochs completed")
    ax.set_ylabel("accuracy on held-out samples (%)")
    ax.set_title("calibration loop: surrogate vs chip", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    p2 = out / "calibration_gap.png"
    fig.savefig(p2, dpi=110)
    plt.close(fig)
    return [p1, p2]


def _fmt(sweep: NoiseSweep, level: float) -> str:
    m, s = sweep.at(level)
    return f"{100 * m:.1f} ± {100 * s:.1f}"


def _summary_markdown(config: RunConfig, chip: Chip, char_summary: str, evaluations: dict[str, ModelEvaluation],
                      trainings: dict[str, CalibrationResult]) -> str:
    ev0 = next(iter(evaluations.values()))
    t_first, t_last = ev0.time.levels[0], ev0.time.levels[-1]
    temp_hot = max(ev0.temperature.levels)
    v_max = max(ev0.activation_noise.levels)
    f_max = max(ev0.device_noise.levels)
    lines = [
        f"# Main job: {chip.profile.name} chip, {config.dataset.value}",
        "",
        f"Profile `{chip.profile.name}` ({chip.profile.technology}); tiles {chip.config.tile.rows}x{chip.config.tile.cols}, "
        f"DAC {chip.config.dac.bits} bits, ADC {chip.config.adc.bits} bits; seed {config.seed}. "
        f"MLP 784-{'-'.join(map(str, config.hidden))}-10 ({config.activation.value}), {config.epochs} epochs, "
        f"calibration loop `{config.calibration.mode.value}` every {config.calibration.period_epochs} epoch(s). "
        f"Robust recipe: `{config.robust_method.value}` at strength {config.robust_strength:g}.",
        "",
        "Accuracy (%) on fresh programmings of the chip, mean ± std over "
        f"{config.evaluation.n_chips} chips x {config.evaluation.n_reads} reads:",
        "",
        f"| model | digital | chip at {t_first:g} s | 1 year | 1 year, drift comp. | {temp_hot:g} K (1 day) | "
        f"device noise x{f_max:g} | act. noise v={v_max:g} unc. | v={v_max:g} corr. |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, ev in evaluations.items():
        lines.append(
            f"| {name} | {100 * ev.clean_digital:.1f} | {_fmt(ev.time, t_first)} | {_fmt(ev.time, t_last)} | "
            f"{_fmt(ev.time_compensated, t_last)} | {_fmt(ev.temperature, temp_hot)} | {_fmt(ev.device_noise, f_max)} | "
            f"{_fmt(ev.activation_noise, v_max)} | {_fmt(ev.activation_noise_correlated, v_max)} |"
        )
    lines += ["", "*digital*: the trained weights run in float arithmetic, without the chip. A network trained "
              "through the surrogate learns the chip's nonlinearities too (ADC clipping of tile partial sums, "
              "quantization), so its digital accuracy can be below its accuracy on the chip."]
    if chip.profile.temperature.conductance_activation_energy_ev == 0 and chip.profile.temperature.drift_activation_energy_ev == 0 \
            and chip.profile.temperature.conductance_tcr_per_kelvin == 0:
        lines += ["", f"Profile `{chip.profile.name}` has no temperature coefficients (none verified in the literature), "
                  "so the temperature sweep only shows read-to-read spread."]
    lines += ["", "Calibration loop (accuracy on held-out samples, %):", "", "| model | epoch | surrogate | chip | gap |",
              "|---|---|---|---|---|"]
    for name, res in trainings.items():
        for r in res.records:
            if r.chip_accuracy is None:
                continue
            sur = "" if r.surrogate_accuracy is None else f"{100 * r.surrogate_accuracy:.1f}"
            gap = "" if r.gap is None else f"{100 * r.gap:+.1f}"
            lines.append(f"| {name} | {r.epoch} | {sur} | {100 * r.chip_accuracy:.1f} | {gap} |")
    lines += ["", "![accuracy on the chip](accuracy_on_chip.png)", "", "![calibration gap](calibration_gap.png)", "",
              "Characterization of the chip (probe matrices):", "", "```", char_summary, "```", ""]
    return "\n".join(lines)


def run_main_job(
    config: RunConfig,
    out_dir: str | os.PathLike[str],
    *,
    progress: bool = True,
    log: Callable[[str], None] | None = print,
    argv: list[str] | None = None,
) -> RunSummary:
    """Run the main job (module docstring) into ``out_dir``; resumes a run of the same configuration there.

    Parameters
    ----------
    config : RunConfig
        The run; ``RunConfig()`` is the default study, ``RunConfig.quick()`` a smoke run.
    out_dir : path
        Results folder (created).
    progress : bool
        Progress bars on training and characterization.
    log : callable, optional
        Receives one line per step (default ``print``).
    argv : list of str, optional
        Command line recorded in ``run_config.json`` (default ``sys.argv[1:]``).
    """
    started = time.perf_counter()
    if not isinstance(config, RunConfig):
        raise ValueError(f"config must be a RunConfig, got {type(config).__name__}")
    out = Path(out_dir)
    chip = Chip(config.profile, config.chip, seed=config.seed)  # validates the profile before anything is written
    _check_run_dir(out, config, argv)
    files = [Path("run_config.json")]

    # 1. data
    splits = load_dataset(config.dataset, config.data_dir)
    train = splits.train if config.n_train is None else splits.train.subset(slice(0, min(config.n_train, len(splits.train))))
    test = splits.test
    if config.evaluation.n_test is not None:
        test = test.subset(slice(0, min(config.evaluation.n_test, len(test))))
    _say(log, f"[1/4] data: {train.name}: {len(train)} train, {test.name}: {len(test)} test")

    # 2. characterization of the chip with probe matrices
    char_path = out / "characterization.h5"
    if char_path.exists():
        char = read_characterization(char_path)
        _say(log, f"[2/4] characterization: kept {char_path}")
    else:
        _say(log, f"[2/4] characterizing the {chip.profile.name} chip ({config.characterization_inputs} vectors per probe matrix) ...")
        protocol = CharacterizationProtocol(
            n_inputs=max(config.characterization_inputs, 2 * chip.config.tile.rows), n_repeats=4,
            n_sweep_inputs=max(256, config.characterization_inputs // 8), seed=config.seed,
        )
        char = characterize(chip, protocol=protocol, progress=progress)
        write_characterization(char_path, char)
    files.append(Path("characterization.h5"))
    from crossbar.plots import plot_drift

    try:
        plot_drift(char, out / "characterization_drift.png")
        files.append(Path("characterization_drift.png"))
    except ValueError:  # no time sweep
        pass
    initial = char.surrogate_params

    # 3. training of both models with the calibration loop
    sizes = (int(np.prod(train.images.shape[1:])), *config.hidden, train.n_classes)
    train_config = TrainConfig(epochs=config.epochs, batch_size=config.batch_size, learning_rate=config.learning_rate,
                               lr_schedule=LRSchedule.COSINE, seed=config.seed)
    recipes = {"standard": recipe_for(Method.STANDARD, 0.0), "robust": recipe_for(config.robust_method, config.robust_strength, pi_hw=char.pi_hw)}
    trainings: dict[str, CalibrationResult] = {}
    for k, (name, recipe) in enumerate(recipes.items()):
        _say(log, f"[3/4] training the {name} model ({config.epochs} epochs, calibration `{config.calibration.mode.value}`) ...")
        model = MLP(sizes, activation=config.activation, generator=torch.Generator().manual_seed(config.seed))
        trainings[name] = train_with_calibration(
            model, train, chip, train_config=train_config, recipe=recipe, calibration=config.calibration,
            initial_params=initial, eval_data=test, run_dir=out / name, progress=progress,
        )
        files += [Path(name) / "checkpoint.pt", Path(name) / "calibration_log.json"]
        files += [Path(name) / r.characterization_file for r in trainings[name].records if r.characterization_file]

    # 4. evaluation on the chip
    evaluations: dict[str, ModelEvaluation] = {}
    from crossbar.nn import convert_to_analog, program_analog, save_analog_state

    for name, res in trainings.items():
        _say(log, f"[4/4] evaluating the {name} model on the chip (time, temperature, device and activation noise) ...")
        evaluations[name] = _evaluate(res.model, test, chip, config.evaluation, config.seed)
        analog = convert_to_analog(res.model, Chip(chip.profile, chip.config, seed=chip.seed), inplace=False)
        program_analog(analog)
        save_analog_state(analog, out / f"{name}_chip_state.h5")
        files.append(Path(f"{name}_chip_state.h5"))
    files += [p.relative_to(out) for p in write_evaluation(out, chip, config, evaluations, trainings)]
    write_text_atomic(out / "summary.md", _summary_markdown(config, chip, char.summary(), evaluations, trainings))
    files.append(Path("summary.md"))
    wall = time.perf_counter() - started
    _say(log, f"wrote {out}/summary.md and {len(files) - 1} other files in {wall:.0f} s")
    return RunSummary(out_dir=out, config=config, evaluations=evaluations, trainings=trainings, files=files, wall_time_sec=wall)


# --------------------------------------------------------------------------------------------------
# The building blocks of ``crossbar train`` and ``crossbar evaluate``
# --------------------------------------------------------------------------------------------------

MODEL_FILE = "model.pt"
"""Trained weights of ``crossbar train`` (a checkpoint of plain tensors, :mod:`training.checkpoint`)."""
MODEL_META_FILE = "model.json"
"""Topology and provenance of the trained model."""


def save_trained_mlp(directory: str | os.PathLike[str], model: MLP, meta: dict[str, Any]) -> None:
    """Write ``model.pt`` (weights) and ``model.json`` (topology and ``meta``) into ``directory``."""
    from training.checkpoint import save_checkpoint

    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    save_checkpoint(d / MODEL_FILE, {"state_dict": model.state_dict()})
    record = {"format": RUN_FORMAT, "sizes": list(model.sizes), "activation": model.activation_kind.value, **meta}
    write_text_atomic(d / MODEL_META_FILE, json.dumps(record, indent=2) + "\n")


def load_trained_mlp(directory: str | os.PathLike[str]) -> tuple[MLP, dict[str, Any]]:
    """The model written by :func:`save_trained_mlp` and its metadata."""
    from training.checkpoint import load_checkpoint

    d = Path(directory)
    meta_path, weights_path = d / MODEL_META_FILE, d / MODEL_FILE
    for p in (meta_path, weights_path):
        if not p.is_file():
            raise FileNotFoundError(f"{p}: no trained model here (expected the output folder of `crossbar train`)")
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        model = MLP(tuple(meta["sizes"]), activation=ActivationKind(meta["activation"]))
    except (json.JSONDecodeError, KeyError, ValueError, TypeError) as exc:
        raise ValueError(f"{meta_path}: not a model description of `crossbar train` ({exc})") from None
    state = load_checkpoint(weights_path)
    try:
        model.load_state_dict(state["state_dict"])
    except (KeyError, RuntimeError) as exc:
        raise ValueError(f"{weights_path}: weights do not match {meta_path} ({str(exc).splitlines()[0]})") from None
    return model.eval(), meta


def evaluate_on_chip(
    model: torch.nn.Module,
    test: Dataset,
    chip: Chip,
    evaluation: EvaluationConfig,
    *,
    seed: int = 0,
) -> ModelEvaluation:
    """Every sweep of :class:`ModelEvaluation` for one trained model on fresh programmings of ``chip``."""
    if evaluation.n_test is not None:
        test = test.subset(slice(0, min(evaluation.n_test, len(test))))
    return _evaluate(model, test, chip, evaluation, seed)


def write_evaluation(out_dir: str | os.PathLike[str], chip: Chip, config: RunConfig,
                     evaluations: dict[str, ModelEvaluation],
                     trainings: dict[str, CalibrationResult] | None = None) -> list[Path]:
    """``evaluation.h5``, ``evaluation.json``, ``accuracy_on_chip.png`` (and ``calibration_gap.png`` with
    ``trainings``) of some evaluated models; returns the paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    _write_evaluation_h5(out / "evaluation.h5", chip, config, evaluations)
    write_text_atomic(out / "evaluation.json", json.dumps(
        {name: {"clean_digital": ev.clean_digital, **{k: s.to_json() for k, s in ev.sweeps().items()}}
         for name, ev in evaluations.items()}, indent=1) + "\n")
    return [out / "evaluation.h5", out / "evaluation.json", *_plot(evaluations, trainings or {}, out)]
