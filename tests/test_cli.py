"""The ``crossbar`` command, in-process."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from training.cli import main


def test_profiles_lists_and_shows(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["profiles"]) == 0
    assert "pcm" in capsys.readouterr().out
    assert main(["profiles", "pcm"]) == 0
    out = capsys.readouterr().out
    assert "[conductance]" in out and "sources:" in out
    assert main(["profiles", "pcm", "--toml"]) == 0
    assert "schema_version = 1" in capsys.readouterr().out


def test_simulate_quick_writes_every_promised_file(tmp_path: Path) -> None:
    assert main(["simulate", "--quick", "--profile", "pcm", "--out", str(tmp_path)]) == 0
    for name in ("mvm_study.json", "mvm_study.png", "summary.md"):
        assert (tmp_path / name).stat().st_size > 0
    record = json.loads((tmp_path / "mvm_study.json").read_text())
    assert record["study"]["profile"] == "pcm" and record["chip_config"]["adc"]["bits"] == 8


@pytest.mark.parametrize(
    "argv, fragment",
    [
        (["simulate", "--quick", "--profile", "unobtainium"], "no shipped profile"),
        (["simulate", "--quick", "--config", "/nonexistent.toml"], "no such configuration file"),
        (["profiles", "/nonexistent/p.toml"], "no such profile file"),
    ],
    ids=["bad-profile", "missing-config", "missing-profile-file"],
)
def test_errors_are_one_line_and_nonzero(argv: list[str], fragment: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv + (["--out", str(tmp_path)] if argv[0] == "simulate" else [])) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and fragment in err and "\n" not in err


def test_bad_chip_config_in_toml_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = tmp_path / "run.toml"
    cfg.write_text("[chip.adc]\nbits = 1\n")
    assert main(["simulate", "--quick", "--config", str(cfg), "--out", str(tmp_path)]) == 2
    assert "ADCConfig.bits = 1" in capsys.readouterr().err


# ------------------------------------------------------------------------------ characterize, train, evaluate, run
def test_characterize_quick_writes_a_readable_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from crossbar.characterization_io import read_surrogate_params

    out = tmp_path / "char.h5"
    assert main(["characterize", "--quick", "--out", str(out)]) == 0
    assert "alpha_rel" in capsys.readouterr().out
    assert read_surrogate_params(out).read_noise_alpha_rel > 0


def test_no_progress_switches_the_bars_off(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["characterize", "--quick", "--out", str(tmp_path / "a.h5")]) == 0
    assert "chunk" in capsys.readouterr().err  # the tqdm bar
    assert main(["characterize", "--quick", "--no-progress", "--out", str(tmp_path / "b.h5")]) == 0
    assert capsys.readouterr().err == ""


def test_train_physics_informed_reads_pi_hw_from_the_characterization(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import json

    char = tmp_path / "char.h5"
    assert main(["characterize", "--quick", "--no-progress", "--out", str(char)]) == 0
    out = tmp_path / "t"
    assert main(["train", "--quick", "--no-progress", "--method", "physics_informed", "--strength", "0.01",
                 "--calibration", "none", "--characterization", str(char), "--out", str(out)]) == 0
    meta = json.loads((out / "model.json").read_text(encoding="utf-8"))
    assert meta["method"] == "physics_informed" and len(meta["test_accuracy_per_epoch"]) >= 1


def test_train_resumes_after_an_interrupt_and_evaluate_reads_its_output(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import torch

    from training import trainer as trainer_module

    args = ["train", "--quick", "--calibration", "surrogate_only", "--out", str(tmp_path / "t")]
    original = trainer_module.Trainer.fit

    def ctrl_c_in_epoch_2(epoch: int, step: int) -> None:
        if epoch == 1:
            raise KeyboardInterrupt

    def interrupted(self):  # type: ignore[no-untyped-def]
        self.step_callback = ctrl_c_in_epoch_2
        return original(self)

    monkeypatch.setattr(trainer_module.Trainer, "fit", interrupted)
    assert main(args) == 130  # Ctrl-C: exit 130, the checkpoint of epoch 1 is kept
    assert "interrupted" in capsys.readouterr().err
    assert (tmp_path / "t" / "checkpoint.pt").is_file() and not (tmp_path / "t" / "model.pt").exists()
    monkeypatch.setattr(trainer_module.Trainer, "fit", original)
    assert main(args) == 0  # resumes from epoch 1
    assert main(["train", "--quick", "--calibration", "surrogate_only", "--out", str(tmp_path / "u")]) == 0  # uninterrupted
    a = torch.load(tmp_path / "t" / "model.pt", weights_only=True)["state_dict"]
    b = torch.load(tmp_path / "u" / "model.pt", weights_only=True)["state_dict"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    capsys.readouterr()
    assert main(["evaluate", str(tmp_path / "t"), "--quick", "--out", str(tmp_path / "e")]) == 0
    assert "with drift compensation" in capsys.readouterr().out
    record = json.loads((tmp_path / "e" / "evaluation.json").read_text())
    assert set(record["t"]) >= {"clean_digital", "time", "temperature", "device_noise", "activation_noise"}


def test_run_quick_writes_every_promised_file(tmp_path: Path) -> None:
    import h5py

    out = tmp_path / "run"
    assert main(["run", "--quick", "--out", str(out)]) == 0
    for name in ("run_config.json", "characterization.h5", "evaluation.h5", "evaluation.json", "summary.md",
                 "accuracy_on_chip.png", "calibration_gap.png", "standard_chip_state.h5", "robust_chip_state.h5",
                 "standard/calibration_log.json", "robust/checkpoint.pt"):
        assert (out / name).stat().st_size > 0, name
    summary = (out / "summary.md").read_text()
    assert "| standard |" in summary and "| robust |" in summary
    with h5py.File(out / "evaluation.h5") as fh:
        assert fh["robust/time/levels"].attrs["units"] == "s"
        assert fh["standard/time/accuracy"].shape[0] == len(fh["standard/time/levels"])
    config = json.loads((out / "run_config.json").read_text())
    assert config["config"]["seed"] == 0 and config["argv"][:2] == ["run", "--quick"]
    # a rerun into the same folder resumes (nothing to train) and gives the same table
    assert main(["run", "--quick", "--out", str(out)]) == 0
    assert (out / "summary.md").read_text() == summary
    # another configuration into the same folder is refused
    assert main(["run", "--quick", "--seed", "5", "--out", str(out)]) == 2


@pytest.mark.parametrize(
    "argv, fragment",
    [
        (["train", "--quick", "--data", "/nonexistent/mnist"], "/nonexistent/mnist"),
        (["evaluate", "/nonexistent/model", "--quick"], "no trained model here"),
        (["characterize", "--quick", "--out", "char.txt"], "expected an .h5 file"),
        (["run", "--quick", "--config", "/nonexistent/run.toml"], "no such configuration file"),
        (["train", "--quick", "--characterization", "/nonexistent/c.h5"], "/nonexistent/c.h5"),
        (["train", "--quick", "--method", "physics_informed"], "needs --characterization"),
    ],
    ids=["missing-data", "missing-model", "bad-out", "missing-run-config", "missing-characterization", "physics-without-pi-hw"],
)
def test_more_errors_are_one_line(argv: list[str], fragment: str, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and fragment in err and "\n" not in err


def test_run_config_toml_is_validated(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = tmp_path / "run.toml"
    cfg.write_text("epochs = 1\n[calibration]\nperiod_epochs = 0\n")
    assert main(["run", "--quick", "--config", str(cfg), "--out", str(tmp_path / "r")]) == 2
    assert "period_epochs" in capsys.readouterr().err
    cfg.write_text("epoks = 1\n")
    assert main(["run", "--quick", "--config", str(cfg), "--out", str(tmp_path / "r")]) == 2
    assert "unknown key 'epoks'" in capsys.readouterr().err
