"""README tables from a results file (benchmarks/report.py)."""

from __future__ import annotations

import json

from benchmarks.report import main, render

RESULTS = {
    "mode": "quick",
    "machine": {"cpu": "test cpu", "cpu_count": 2, "python": "3.11"},
    "versions": {"crossbar": "0.1.0"},
    "records": [
        {"name": "mvm_512_b1024", "value": 0.004, "unit": "s", "baseline": "gemm", "baseline_value": 0.002,
         "ratio": 2.0, "target": 2.0, "meets_target": True, "params": {}},
        {"name": "mvm_1024_b1024", "value": 0.03, "unit": "s", "baseline": "gemm", "baseline_value": 0.01,
         "ratio": 3.0, "target": 2.0, "meets_target": False, "params": {}},
        {"name": "mnist_mlp_clean_acc", "value": 0.98, "unit": "accuracy", "baseline": None, "baseline_value": None,
         "ratio": None, "target": None, "meets_target": None, "params": {}},
    ],
}


def test_one_table_per_group_with_ratios_and_misses_marked():
    text = render(RESULTS)
    assert "`quick` mode on test cpu (2 cores)" in text
    assert text.count("| record | value |") == 2
    rows = {line.split("|")[1].strip(): line for line in text.splitlines() if line.startswith("| `")}
    assert set(rows) == {"`mvm_512_b1024`", "`mvm_1024_b1024`", "`mnist_mlp_clean_acc`"}
    assert "| 3 | 2 | **no** |" in rows["`mvm_1024_b1024`"]
    assert "| 2 | 2 | yes |" in rows["`mvm_512_b1024`"]
    assert "0.98 accuracy" in rows["`mnist_mlp_clean_acc`"]


def test_excluded_groups_are_left_out(tmp_path, capsys):
    path = tmp_path / "results.json"
    path.write_text(json.dumps(RESULTS), encoding="utf-8")
    assert main([str(path), "--exclude", "mnist"]) == 0
    out = capsys.readouterr().out
    assert "mnist" not in out and "`mvm_512_b1024`" in out


def test_unreadable_file_is_one_line_error(tmp_path, capsys):
    assert main([str(tmp_path / "missing.json")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: cannot read") and err.count("\n") == 1
