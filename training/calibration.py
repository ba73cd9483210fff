"""The calibration loop: train on the chip's surrogate with the simulated chip as the hardware in the loop.

Training backpropagates through a differentiable surrogate of the chip (:mod:`crossbar.nn.surrogate`);
the chip itself (:class:`crossbar.Chip`) plays the real hardware, which can be programmed and measured
but not differentiated. Three modes, for the ablation "surrogate only vs hardware in the loop":

* :attr:`CalibrationMode.SURROGATE_ONLY`: the surrogate's parameters come from one characterization made
  before training (of probe matrices, or a file the user gives) and are never updated;
* :attr:`CalibrationMode.CALIBRATED`: the same start, then every ``period_epochs`` epochs (T_cal) the
  current weights are programmed onto the chip, the chip is re-characterized with those weights as the
  probe matrices (:func:`crossbar.characterization.characterize`) and the surrogate's parameters are
  replaced by the new fit;
* :attr:`CalibrationMode.CHIP_IN_THE_LOOP`: no surrogate; every forward runs on the chip
  (:func:`crossbar.nn.convert_to_analog`), the backward is straight-through.

At every calibration, and once more after the last epoch, the loop logs the gap between surrogate and
chip: the accuracy of the model on the surrogate and on a fresh programming of the chip, on the same
held-out samples. The log is a JSON file written atomically after every calibration; with the trainer's
per-epoch checkpoint, an interrupted run resumes to the same final weights as an uninterrupted one.

Determinism: every noise stream is re-seeded at the start of every epoch from ``(seed, epoch, layer)``,
and every chip the loop programs gets its own seed from ``(chip.seed, purpose, epoch)``, so what happens
in an epoch depends only on the weights at its start, whatever ran before in the process.
"""

from __future__ import annotations

import copy
import enum
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from crossbar import Chip
from crossbar.characterization import Characterization, CharacterizationProtocol, characterize
from crossbar.characterization_io import write_characterization
from crossbar.fitting import SurrogateParams
from crossbar.nn import analog_layers, convert_to_analog, reseed_analog
from crossbar.nn.surrogate import convert_to_surrogate, strip_surrogate, surrogate_layers, update_surrogate_params
from training._atomic import write_json_atomic
from training._checks import check_enum, check_int
from training.datasets import Dataset
from training.evaluation import evaluate_accuracy
from training.trainer import Recipe, TrainConfig, TrainHistory, Trainer

__all__ = [
    "LOG_FORMAT",
    "CalibrationConfig",
    "CalibrationMode",
    "CalibrationRecord",
    "CalibrationResult",
    "derived_seed",
    "train_with_calibration",
]

LOG_FORMAT = 1
"""Version of the calibration log's JSON layout."""

_PURPOSE_CHARACTERIZE = 1
_PURPOSE_GAP = 2
_PURPOSE_TRAIN = 3
_PURPOSE_NOISE = 4


class CalibrationMode(enum.Enum):
    """How the chip takes part in training."""

    SURROGATE_ONLY = "surrogate_only"
    """Train on a surrogate fitted once before training; never re-measured."""
    CALIBRATED = "calibrated"
    """Train on the surrogate; every ``period_epochs`` epochs re-characterize the chip with the current
    weights and update the surrogate."""
    CHIP_IN_THE_LOOP = "chip_in_the_loop"
    """Forward on the chip, straight-through backward; no surrogate."""


@dataclass(frozen=True, kw_only=True)
class CalibrationConfig:
    """Settings of the calibration loop."""

    mode: CalibrationMode = CalibrationMode.CALIBRATED
    """Surrogate only, calibrated surrogate, or chip in the loop."""
    period_epochs: int = 2
    """T_cal: epochs between re-characterizations (``CALIBRATED``)."""
    n_inputs: int = 2048
    """Input vectors per layer and characterization (raised to 2 in_features where needed)."""
    n_repeats: int = 4
    """Reads of every characterization vector (>= 2)."""
    time_sec: float | None = None
    """Operating point of the characterizations, time since programming, s (``None``: the profile's t0);
    a surrogate fitted at a later time includes that time's drift (its gain)."""
    gap_samples: int = 1000
    """Held-out samples on which the surrogate-vs-chip accuracy gap is measured (0: no gap measurement)."""
    gap_draws: int = 2
    """Noise draws (surrogate) and reads (chip) averaged per gap measurement."""
    save_characterizations: bool = True
    """Write every characterization as an HDF5 file into the run's directory."""
    seed: int = 0
    """Seed of the surrogate's noise streams and of the probe inputs."""

    def __post_init__(self) -> None:
        check_enum(self, "mode", CalibrationMode)
        check_int(self, "period_epochs", 1, 1_000_000)
        check_int(self, "n_inputs", 2, 1 << 30)
        check_int(self, "n_repeats", 2, 1 << 16)
        if self.time_sec is not None:
            if isinstance(self.time_sec, bool) or not isinstance(self.time_sec, (int, float)) or not (
                math.isfinite(self.time_sec) and self.time_sec >= 0
            ):
                raise ValueError(f"CalibrationConfig.time_sec = {self.time_sec!r} s must be a finite time >= 0 s or None")
            object.__setattr__(self, "time_sec", float(self.time_sec))
        check_int(self, "gap_samples", 0, 1 << 30)
        check_int(self, "gap_draws", 1, 1000)
        if not isinstance(self.save_characterizations, bool):
            raise ValueError(f"CalibrationConfig.save_characterizations = {self.save_characterizations!r} must be True or False")
        check_int(self, "seed", 0, (1 << 63) - 1)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-serializable dict (the mode as its value)."""
        return {
            "mode": self.mode.value,
            "period_epochs": self.period_epochs,
            "n_inputs": self.n_inputs,
            "n_repeats": self.n_repeats,
            "time_sec": self.time_sec,
            "gap_samples": self.gap_samples,
            "gap_draws": self.gap_draws,
            "save_characterizations": self.save_characterizations,
            "seed": self.seed,
        }


@dataclass(frozen=True, kw_only=True)
class CalibrationRecord:
    """One measurement of the chip during training."""

    epoch: int
    """Epochs completed when the chip was measured (0: before training)."""
    params: SurrogateParams | None
    """Surrogate parameters in use from this epoch on (``None`` in chip-in-the-loop mode)."""
    characterized: bool
    """Whether the chip was characterized here (False: only the gap was measured)."""
    surrogate_accuracy: float | None
    """Accuracy on the gap samples through the surrogate (mean over draws); ``None`` if not measured."""
    chip_accuracy: float | None
    """Accuracy on the gap samples on a fresh programming of the chip (mean over reads)."""
    characterization_file: str | None = None
    """File name of the characterization written here (in the run directory), if any."""

    @property
    def gap(self) -> float | None:
        """Surrogate accuracy minus chip accuracy (positive: the surrogate is optimistic)."""
        if self.surrogate_accuracy is None or self.chip_accuracy is None:
            return None
        return self.surrogate_accuracy - self.chip_accuracy

    def to_json(self) -> dict[str, Any]:
        return {
            "epoch": self.epoch,
            "params": None if self.params is None else self.params.to_dict(),
            "characterized": self.characterized,
            "surrogate_accuracy": self.surrogate_accuracy,
            "chip_accuracy": self.chip_accuracy,
            "gap": self.gap,
            "characterization_file": self.characterization_file,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> CalibrationRecord:
        params = data.get("params")
        return cls(
            epoch=int(data["epoch"]),
            params=None if params is None else SurrogateParams.from_dict(params),
            characterized=bool(data["characterized"]),
            surrogate_accuracy=data.get("surrogate_accuracy"),
            chip_accuracy=data.get("chip_accuracy"),
            characterization_file=data.get("characterization_file"),
        )


@dataclass
class CalibrationResult:
    """What :func:`train_with_calibration` returns."""

    model: nn.Module
    """The trained model, digital (its linear layers plain ``nn.Linear``), ready to be run on the chip."""
    history: TrainHistory
    """The trainer's per-epoch record."""
    records: list[CalibrationRecord] = field(default_factory=list)
    """Every measurement of the chip, in epoch order; the last is after training."""
    mode: CalibrationMode = CalibrationMode.CALIBRATED
    """The mode of the run."""

    def gap_table(self) -> list[tuple[int, float | None, float | None, float | None]]:
        """``(epoch, surrogate accuracy, chip accuracy, gap)`` per record."""
        return [(r.epoch, r.surrogate_accuracy, r.chip_accuracy, r.gap) for r in self.records]


def derived_seed(*parts: int) -> int:
    """A 63-bit seed derived from integers (independent streams for distinct tuples)."""
    state = np.random.SeedSequence([int(p) for p in parts]).generate_state(1, np.uint64)[0]
    return int(state >> np.uint64(1))


class _Loop:
    """State of one calibration run: the working model, the chip, the log."""

    def __init__(
        self,
        model: nn.Module,
        chip: Chip,
        calibration: CalibrationConfig,
        *,
        initial_params: SurrogateParams | None,
        gap_data: Dataset | None,
        run_dir: Path | None,
        progress: bool,
    ) -> None:
        self.chip = chip
        self.cal = calibration
        self.gap_data = gap_data
        self.run_dir = run_dir
        self.progress = progress
        self.log_path = None if run_dir is None else run_dir / "calibration_log.json"
        self.records: list[CalibrationRecord] = self._read_log()
        self.installed: SurrogateParams | None = None
        work = copy.deepcopy(model)
        if calibration.mode is CalibrationMode.CHIP_IN_THE_LOOP:
            self.work = convert_to_analog(work, self._chip(_PURPOSE_TRAIN, 0), inplace=True)
            if not analog_layers(self.work):
                raise ValueError("the model has no nn.Linear / nn.Conv2d layer to run on the chip")
            return
        if self.records:
            params = self.records[0].params
            if params is None:
                raise ValueError(f"{self.log_path}: the log was written by a chip-in-the-loop run; use another directory")
        elif initial_params is not None:
            params = initial_params
        else:
            params = None  # characterize probe matrices at epoch 0 (below)
        self.work = convert_to_surrogate(work, params or SurrogateParams(), seed=calibration.seed, inplace=True)
        if not surrogate_layers(self.work):
            raise ValueError("the model has no nn.Linear layer to run through the surrogate")
        if not self.records:
            if params is None:
                char = self._characterize(0, matrices=None)
                self._append(0, char.surrogate_params, characterized=True, char=char)
            else:
                self._append(0, params, characterized=False)
        self._install(self.records[0].params)

    # ------------------------------------------------------------------ chips, logs
    def _chip(self, purpose: int, epoch: int) -> Chip:
        return Chip(self.chip.profile, self.chip.config, seed=derived_seed(self.chip.seed, purpose, epoch))

    def _read_log(self) -> list[CalibrationRecord]:
        if self.log_path is None or not self.log_path.exists():
            return []
        try:
            data = json.loads(self.log_path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise ValueError(f"{self.log_path}: unreadable calibration log ({exc})") from None
        if not isinstance(data, dict) or data.get("format") != LOG_FORMAT:
            raise ValueError(f"{self.log_path}: not a calibration log of format {LOG_FORMAT}")
        if data.get("config") != self.cal.to_dict() or data.get("chip_seed") != self.chip.seed or data.get(
            "profile"
        ) != self.chip.profile.name:
            raise ValueError(f"{self.log_path}: the log belongs to a run with another calibration config, chip or profile")
        return [CalibrationRecord.from_json(r) for r in data["records"]]

    def _write_log(self) -> None:
        if self.log_path is None:
            return
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        write_json_atomic(
            self.log_path,
            {
                "format": LOG_FORMAT,
                "config": self.cal.to_dict(),
                "chip_seed": self.chip.seed,
                "profile": self.chip.profile.name,
                "records": [r.to_json() for r in self.records],
            },
        )

    def _characterize(self, epoch: int, matrices: dict[str, np.ndarray] | None) -> Characterization:
        n_in = max((w.shape[1] for w in matrices.values()), default=self.chip.config.tile.rows) if matrices else (
            self.chip.config.tile.rows
        )
        protocol = CharacterizationProtocol(
            n_inputs=max(self.cal.n_inputs, 2 * n_in),
            n_repeats=self.cal.n_repeats,
            chunk_size=512,
            time_sec=self.cal.time_sec,
            times_sec=(),
            temperatures_kelvin=(),
            raw_vectors=64,
            n_groups=8,
            seed=derived_seed(self.cal.seed, _PURPOSE_CHARACTERIZE, epoch),
        )
        return characterize(self._chip(_PURPOSE_CHARACTERIZE, epoch), matrices, protocol=protocol, progress=self.progress)

    def _append(self, epoch: int, params: SurrogateParams | None, *, characterized: bool, char: Characterization | None = None) -> None:
        file_name = None
        if char is not None and self.cal.save_characterizations and self.run_dir is not None:
            file_name = f"characterization_epoch{epoch:03d}.h5"
            self.run_dir.mkdir(parents=True, exist_ok=True)
            write_characterization(self.run_dir / file_name, char)
        sur, chip_acc = self._gap(epoch)
        self.records.append(
            CalibrationRecord(
                epoch=epoch, params=params, characterized=characterized, surrogate_accuracy=sur, chip_accuracy=chip_acc,
                characterization_file=file_name,
            )
        )
        self._write_log()

    def _install(self, params: SurrogateParams | None) -> None:
        if params is not None and params != self.installed:
            update_surrogate_params(self.work, params)
            self.installed = params

    # ------------------------------------------------------------------ the gap
    def digital_model(self) -> nn.Module:
        """A digital copy of the working model (plain nn.Linear / nn.Conv2d layers)."""
        if self.cal.mode is CalibrationMode.CHIP_IN_THE_LOOP:
            plain = copy.deepcopy(self._template)
            plain.load_state_dict(self.work.state_dict())
            return plain
        return strip_surrogate(self.work, inplace=False)

    def _gap(self, epoch: int) -> tuple[float | None, float | None]:
        data = self.gap_data
        if data is None or self.cal.gap_samples == 0 or len(data) == 0:
            return None, None
        data = data.subset(slice(0, min(self.cal.gap_samples, len(data))))
        was_training = self.work.training
        try:
            sur = None
            if self.cal.mode is not CalibrationMode.CHIP_IN_THE_LOOP:
                scores = []
                for d in range(self.cal.gap_draws):
                    self._reseed(derived_seed(self.cal.seed, _PURPOSE_GAP, epoch, d))
                    scores.append(evaluate_accuracy(self.work, data))
                sur = float(np.mean(scores))
            chip_model = convert_to_analog(self.digital_model(), self._chip(_PURPOSE_GAP, epoch), inplace=True)
            chip_scores = []
            for d in range(self.cal.gap_draws):
                reseed_analog(chip_model, d)
                chip_scores.append(evaluate_accuracy(chip_model, data))
            return sur, float(np.mean(chip_scores))
        finally:
            self.work.train(was_training)

    # ------------------------------------------------------------------ per epoch
    def _reseed(self, seed: int) -> None:
        if self.cal.mode is CalibrationMode.CHIP_IN_THE_LOOP:
            reseed_analog(self.work, seed)
        else:
            for i, (_, layer) in enumerate(surrogate_layers(self.work)):
                layer.reseed(derived_seed(seed, i))

    def on_epoch_start(self, epoch: int) -> None:
        """Calibrate if due, install the parameters in force, re-seed every noise stream."""
        mode = self.cal.mode
        if mode is CalibrationMode.CHIP_IN_THE_LOOP:
            # A fresh chip per epoch, programmed with the weights at the epoch's start: the same devices
            # whether the run was interrupted before this epoch or not.
            chip = self._chip(_PURPOSE_TRAIN, epoch)
            for _, layer in analog_layers(self.work):
                layer.chip = chip
                layer.program()
        else:
            due = mode is CalibrationMode.CALIBRATED and epoch > 0 and epoch % self.cal.period_epochs == 0
            if due and not any(r.epoch == epoch and r.characterized for r in self.records):
                matrices = {name: layer.weight.detach().cpu().double().numpy() for name, layer in surrogate_layers(self.work)}
                char = self._characterize(epoch, matrices)
                self._append(epoch, char.surrogate_params, characterized=True, char=char)
            in_force = [r for r in self.records if r.epoch <= epoch and r.params is not None]
            self._install(in_force[-1].params)
        self._reseed(derived_seed(self.cal.seed, _PURPOSE_NOISE, epoch))

    def finish(self, epochs: int) -> None:
        """Log the gap of the final weights (once, also when a finished run is resumed)."""
        if not any(r.epoch == epochs and not r.characterized for r in self.records[1:]):
            params = self.installed if self.cal.mode is not CalibrationMode.CHIP_IN_THE_LOOP else None
            self._append(epochs, params, characterized=False)


def train_with_calibration(
    model: nn.Module,
    train_data: Dataset,
    chip: Chip,
    *,
    train_config: TrainConfig,
    recipe: Recipe | None = None,
    calibration: CalibrationConfig | None = None,
    initial_params: SurrogateParams | None = None,
    eval_data: Dataset | None = None,
    gap_data: Dataset | None = None,
    run_dir: str | os.PathLike[str] | None = None,
    progress: bool = True,
    step_callback: Any = None,
) -> CalibrationResult:
    """Train ``model`` against ``chip`` with the calibration loop (module docstring).

    Parameters
    ----------
    model : nn.Module
        The network (left untouched; a working copy is trained). Its ``nn.Linear`` layers run through the
        surrogate (or, chip in the loop, its ``nn.Linear``/``nn.Conv2d`` layers run on the chip).
    train_data : Dataset
        Training split.
    chip : Chip
        The hardware: profile, configuration and base seed of every chip the loop programs. Its
        activation must be the identity (the model applies its own nonlinearity).
    train_config, recipe
        Optimization settings and robustness methods (:class:`~training.trainer.Trainer`).
    calibration : CalibrationConfig, optional
        Mode, T_cal, characterization size, gap measurement.
    initial_params : SurrogateParams, optional
        Surrogate parameters to start from (e.g. ``read_surrogate_params(path)`` of an earlier
        characterization); default: characterize the chip with probe matrices before training.
    eval_data : Dataset, optional
        Scored after every epoch by the trainer (through the surrogate or chip the model trains on).
    gap_data : Dataset, optional
        Held-out samples for the surrogate-vs-chip gap (default: ``eval_data``).
    run_dir : path, optional
        Directory of the run: ``checkpoint.pt`` (every epoch), ``calibration_log.json`` and the
        characterization files. An existing run there is resumed.
    progress : bool
        Progress bars.
    step_callback : callable, optional
        ``callback(epoch, step)`` after every optimizer step (passed to the trainer; tests interrupt with it).

    Returns
    -------
    CalibrationResult
    """
    calibration = CalibrationConfig() if calibration is None else calibration
    if not isinstance(calibration, CalibrationConfig):
        raise ValueError(f"calibration must be a CalibrationConfig, got {type(calibration).__name__}")
    if not isinstance(chip, Chip):
        raise ValueError(f"chip must be a crossbar.Chip, got {type(chip).__name__}")
    if initial_params is not None and not isinstance(initial_params, SurrogateParams):
        raise ValueError(f"initial_params must be SurrogateParams, got {type(initial_params).__name__}")
    directory = None if run_dir is None else Path(run_dir)
    if directory is not None:
        directory.mkdir(parents=True, exist_ok=True)
    loop = _Loop(
        model, chip, calibration, initial_params=initial_params, gap_data=gap_data if gap_data is not None else eval_data,
        run_dir=directory, progress=progress,
    )
    loop._template = model  # for the digital copy in chip-in-the-loop mode
    trainer = Trainer(
        loop.work,
        train_data,
        config=train_config,
        recipe=recipe,
        eval_data=eval_data,
        checkpoint_path=None if directory is None else directory / "checkpoint.pt",
        progress=progress,
        step_callback=step_callback,
        epoch_start_callback=loop.on_epoch_start,
    )
    history = trainer.fit()
    loop.finish(train_config.epochs)
    trained = copy.deepcopy(model)
    trained.load_state_dict(loop.digital_model().state_dict())
    trained.eval()
    return CalibrationResult(model=trained, history=history, records=list(loop.records), mode=calibration.mode)
