"""The calibration loop: surrogate only, calibrated surrogate, chip in the loop; logging and resuming."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from crossbar import Chip, ChipConfig, TileConfig
from crossbar.fitting import SurrogateParams
from training.calibration import CalibrationConfig, CalibrationMode, CalibrationRecord, train_with_calibration
from training.datasets import Dataset
from training.models import MLP
from training.trainer import TrainConfig

TILES = TileConfig(rows=32, cols=16)


def _chip(seed: int = 0) -> Chip:
    return Chip("pcm", ChipConfig(tile=TILES), seed=seed)


def _model() -> MLP:
    return MLP((64, 12, 4), generator=torch.Generator().manual_seed(0))


def _cal(mode: CalibrationMode, **kw: object) -> CalibrationConfig:
    return CalibrationConfig(mode=mode, period_epochs=2, n_inputs=160, n_repeats=2, gap_samples=64, gap_draws=1, **kw)  # type: ignore[arg-type]


def _train(data: Dataset, mode: CalibrationMode, run_dir: Path | None, epochs: int = 5, **kw: object):  # type: ignore[no-untyped-def]
    return train_with_calibration(
        _model(), data, _chip(), train_config=TrainConfig(epochs=epochs, batch_size=32, learning_rate=1e-2, seed=1),
        calibration=_cal(mode), eval_data=data, run_dir=run_dir, progress=False, **kw,
    )


class _Interrupt(Exception):
    pass


def _interrupt_at(epoch: int):  # type: ignore[no-untyped-def]
    def callback(e: int, step: int) -> None:
        if e == epoch and step == 1:
            raise _Interrupt

    return callback


@pytest.mark.parametrize("mode", list(CalibrationMode), ids=[m.value for m in CalibrationMode])
def test_every_mode_learns_and_logs_the_gap(tiny_dataset: Dataset, mode: CalibrationMode, tmp_path: Path) -> None:
    result = _train(tiny_dataset, mode, tmp_path)
    assert result.history.eval_accuracy[-1] > 0.6  # 4 classes: chance is 0.25
    assert isinstance(result.model, MLP) and not any(type(m) is not torch.nn.Linear for m in result.model.modules()
                                                        if isinstance(m, torch.nn.Linear))
    final = result.records[-1]
    assert final.epoch == 5 and final.chip_accuracy is not None and final.chip_accuracy > 0.5
    if mode is CalibrationMode.CHIP_IN_THE_LOOP:
        assert final.params is None and final.gap is None
    else:
        assert final.gap is not None and abs(final.gap) < 0.3
    log = json.loads((tmp_path / "calibration_log.json").read_text())
    assert [r["epoch"] for r in log["records"]] == [r.epoch for r in result.records]


def test_calibrated_mode_recharacterizes_every_period(tiny_dataset: Dataset, tmp_path: Path) -> None:
    result = _train(tiny_dataset, CalibrationMode.CALIBRATED, tmp_path)
    measured = [r.epoch for r in result.records if r.characterized]
    assert measured == [0, 2, 4]  # before training, then every T_cal = 2 epochs
    params = [r.params for r in result.records if r.characterized]
    assert params[0] != params[1] != params[2]  # each fit is a new measurement of the current weights
    assert all((tmp_path / r.characterization_file).is_file() for r in result.records if r.characterized)


def test_surrogate_only_keeps_its_first_parameters(tiny_dataset: Dataset, tmp_path: Path) -> None:
    result = _train(tiny_dataset, CalibrationMode.SURROGATE_ONLY, tmp_path)
    assert [r.epoch for r in result.records if r.characterized] == [0]
    assert all(r.params == result.records[0].params for r in result.records)


def test_initial_parameters_are_used_without_measuring(tiny_dataset: Dataset) -> None:
    params = SurrogateParams.nominal(_chip().profile, _chip().config)
    result = train_with_calibration(
        _model(), tiny_dataset, _chip(), train_config=TrainConfig(epochs=1, batch_size=32), initial_params=params,
        calibration=_cal(CalibrationMode.SURROGATE_ONLY), progress=False,
    )
    assert not result.records[0].characterized and result.records[0].params == params
    assert result.records[0].gap is None  # no gap data given


@pytest.mark.parametrize("mode", [CalibrationMode.CALIBRATED, CalibrationMode.CHIP_IN_THE_LOOP], ids=["calibrated", "chip"])
def test_interrupted_run_resumes_to_identical_weights_and_log(tiny_dataset: Dataset, tmp_path: Path, mode: CalibrationMode) -> None:
    reference = _train(tiny_dataset, mode, tmp_path / "straight")
    with pytest.raises(_Interrupt):
        _train(tiny_dataset, mode, tmp_path / "resumed", step_callback=_interrupt_at(3))  # mid-epoch, after a calibration
    resumed = _train(tiny_dataset, mode, tmp_path / "resumed")
    for a, b in zip(reference.model.state_dict().values(), resumed.model.state_dict().values()):
        assert torch.equal(a, b)
    assert [r.to_json() for r in reference.records] == [r.to_json() for r in resumed.records]


def test_a_log_of_another_run_is_refused(tiny_dataset: Dataset, tmp_path: Path) -> None:
    _train(tiny_dataset, CalibrationMode.SURROGATE_ONLY, tmp_path, epochs=1)
    with pytest.raises(ValueError, match="another calibration config"):
        _train(tiny_dataset, CalibrationMode.CALIBRATED, tmp_path, epochs=1)


def test_record_json_round_trip() -> None:
    rec = CalibrationRecord(epoch=3, params=SurrogateParams(gain_rel=0.9), characterized=True, surrogate_accuracy=0.8,
                            chip_accuracy=0.75, characterization_file="c.h5")
    back = CalibrationRecord.from_json(json.loads(json.dumps(rec.to_json())))
    assert back == rec and back.gap == pytest.approx(0.05)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"period_epochs": 0}, "period_epochs"), ({"n_repeats": 1}, "n_repeats"), ({"mode": "sometimes"}, "mode"),
     ({"time_sec": -1.0}, "time_sec")],
    ids=["period", "repeats", "mode", "time"],
)
def test_config_validation(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        CalibrationConfig(**kwargs)
