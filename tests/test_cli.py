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
