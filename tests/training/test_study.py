"""The resumable study runner: caching, fingerprints, teachers, selection, JSON round trips, plots."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from tests.training.helpers import make_tiny_dataset
from training.distillation import Distillation
from training.evaluation import NoiseSweep, evaluate_accuracy
from training.noise import ActivationNoise
from training.plots import plot_accuracy_vs_variance, plot_chip_sweeps, plot_tradeoff
from training.srl import SRLConfig
from training.study import (
    REPLICATE_SUFFIX,
    ModelKind,
    RunResult,
    StudyData,
    StudyEvaluation,
    StudyRun,
    drop_at_clean,
    issue6_runs,
    load_trained_model,
    markdown_table,
    quick_runs,
    replicates,
    run_study,
    select_best,
    split_validation,
)
from training.trainer import LRSchedule, Recipe, TrainConfig, TrainHistory, Trainer

SIZES = (64, 16, 16, 4)
EVAL = StudyEvaluation(variances=(0.1, 1.0), n_draws=2, batch_size=50)


@pytest.fixture(scope="module")
def data() -> StudyData:
    train, val = split_validation(make_tiny_dataset(160, seed=1), 40, seed=0)
    return StudyData(train=train, val=val, test=make_tiny_dataset(60, seed=2))


def _cfg(epochs=3, seed=0):
    return TrainConfig(epochs=epochs, batch_size=16, learning_rate=1e-2, lr_schedule=LRSchedule.COSINE, seed=seed)


def _runs():
    return [
        StudyRun(name="standard", method="standard", strength=0.0, train=_cfg(), sizes=SIZES),
        StudyRun(name="na", method="noise_aware", strength=0.5, train=_cfg(), sizes=SIZES,
                 recipe=Recipe(train_noise=(ActivationNoise(variance=0.5),))),
        StudyRun(name="student", method="distill", strength=0.5, train=_cfg(), sizes=SIZES, teacher="standard",
                 recipe=Recipe(train_noise=(ActivationNoise(variance=0.5),), distillation=Distillation())),
        StudyRun(name="srl", method="srl", strength=0.1, train=_cfg(), sizes=(64, 16, 16, 4), model=ModelKind.RESIDUAL,
                 srl=SRLConfig(beta=0.1)),
    ]


def test_split_validation_is_disjoint_seeded_and_complete():
    d = make_tiny_dataset(50)
    train, val = split_validation(d, 10, seed=3)
    assert len(train) == 40 and len(val) == 10
    rows = {tuple(x.flatten().tolist()) for x in torch.cat([train.images, val.images])}
    assert len(rows) == 50  # every sample once
    again, _ = split_validation(d, 10, seed=3)
    assert torch.equal(again.images, train.images)
    with pytest.raises(ValueError, match="n_val"):
        split_validation(d, 50)


def test_study_trains_caches_and_resumes(tmp_path, data, monkeypatch):
    lines: list[str] = []
    results = run_study(_runs(), data, results_dir=tmp_path, evaluation=EVAL, log=lines.append)
    assert list(results) == ["standard", "na", "student", "srl"]
    assert all(line.startswith("finished") for line in lines)
    assert sorted(p.name for p in tmp_path.glob("*.json")) == ["na.json", "srl.json", "standard.json", "student.json"]
    assert not list((tmp_path / "checkpoints").glob("*.pt"))  # removed when each run finished
    r = results["na"]
    assert r.sweeps["uncorrelated"].accuracies.shape == (2, 2) and set(r.sweeps) == {"uncorrelated", "correlated"}
    assert len(r.history.eval_accuracy) == 3 and len(r.history.eval_noisy_accuracy) == 3
    assert r.drop() == pytest.approx(r.clean_test - r.sweeps["uncorrelated"].mean[1])
    # The cached weights reproduce the cached clean accuracy.
    model = load_trained_model(_runs()[1], r, tmp_path)
    assert evaluate_accuracy(model, data.test) == pytest.approx(r.clean_test)

    # Second call: everything is loaded, nothing is trained.
    def refuse(self):  # noqa: ANN001
        raise AssertionError("a cached run was retrained")

    monkeypatch.setattr(Trainer, "fit", refuse)
    lines.clear()
    again = run_study(_runs(), data, results_dir=tmp_path, evaluation=EVAL, log=lines.append)
    assert all(line.startswith("cached") for line in lines)
    for name in results:
        assert again[name].to_json() == results[name].to_json()
    monkeypatch.undo()

    # Changing the teacher retrains the teacher and its student, and nothing else.
    runs = _runs()
    runs[0] = StudyRun(name="standard", method="standard", strength=0.0, train=_cfg(seed=5), sizes=SIZES)
    lines.clear()
    run_study(runs, data, results_dir=tmp_path, evaluation=EVAL, log=lines.append)
    assert [line.split()[0] for line in lines] == ["finished", "cached", "finished", "cached"]


def test_a_run_interrupted_mid_training_resumes_from_its_checkpoint(tmp_path, data, monkeypatch):
    runs = _runs()[:2]
    reference = run_study(runs, data, results_dir=tmp_path / "a", evaluation=EVAL)
    original = Trainer._evaluate_epoch

    def crash_in_third_epoch(self, epoch):  # noqa: ANN001
        if epoch == 2:  # after two checkpointed epochs, before the third is saved
            raise KeyboardInterrupt
        original(self, epoch)

    monkeypatch.setattr(Trainer, "_evaluate_epoch", crash_in_third_epoch)
    with pytest.raises(KeyboardInterrupt):
        run_study(runs, data, results_dir=tmp_path / "b", evaluation=EVAL)
    monkeypatch.undo()
    assert len(list((tmp_path / "b" / "checkpoints").glob("*.pt"))) == 1
    resumed = run_study(runs, data, results_dir=tmp_path / "b", evaluation=EVAL)
    for name in reference:
        a, b = reference[name].to_json(), resumed[name].to_json()
        a.pop("train_seconds"), b.pop("train_seconds")
        assert a == b


def test_fine_tuning_starts_from_the_weights_of_an_earlier_run(tmp_path, data, monkeypatch):
    base = _runs()[0]
    tuned = StudyRun(name="tuned", method="finetune", strength=0.5, train=_cfg(epochs=1), sizes=SIZES,
                     init_from="standard", recipe=Recipe(train_noise=(ActivationNoise(variance=0.5),)))
    results = run_study([base], data, results_dir=tmp_path, evaluation=EVAL)
    start = load_trained_model(base, results["standard"], tmp_path).state_dict()
    seen = {}
    original = Trainer.fit

    def spy(self):  # noqa: ANN001
        seen.update({k: v.clone() for k, v in self.model.state_dict().items()})
        return original(self)

    monkeypatch.setattr(Trainer, "fit", spy)
    run_study([base, tuned], data, results_dir=tmp_path, evaluation=EVAL)
    assert seen.keys() == start.keys() and all(torch.equal(seen[k], start[k]) for k in start)
    other = StudyRun(name="tuned", method="finetune", strength=0.5, train=_cfg(epochs=1), sizes=(64, 8, 8, 4),
                     init_from="standard")
    with pytest.raises(ValueError, match="another topology"):
        run_study([base, other], data, results_dir=tmp_path / "x", evaluation=EVAL)


def test_run_order_and_name_checks(tmp_path, data):
    runs = _runs()
    with pytest.raises(ValueError, match="earlier run"):
        run_study([runs[2], runs[0]], data, results_dir=tmp_path, evaluation=EVAL)
    with pytest.raises(ValueError, match="unique"):
        run_study([runs[0], runs[0]], data, results_dir=tmp_path, evaluation=EVAL)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"name": "a b"}, "StudyRun.name"),
        ({"teacher": "standard"}, "go together"),
        ({"srl": SRLConfig()}, "not residual"),
        ({"model": ModelKind.RESIDUAL, "sizes": (64, 16, 8, 4)}, "equal hidden widths"),
        ({"sizes": (64, 4)}, "StudyRun.sizes"),
        ({"init_from": "x"}, "another run"),
    ],
    ids=["name", "teacher", "srl", "widths", "sizes", "init-self"],
)
def test_study_run_validation(kwargs, message):
    base = {"name": "x", "method": "m", "strength": 1.0, "train": _cfg()}
    with pytest.raises(ValueError, match=message):
        StudyRun(**{**base, **kwargs})


def test_evaluation_validation():
    with pytest.raises(ValueError, match="reference_variance"):
        StudyEvaluation(variances=(0.1, 0.5), reference_variance=1.0)
    with pytest.raises(ValueError, match="variances"):
        StudyEvaluation(variances=(0.0, 1.0))


def _result(name, method, clean_val, noisy_val, clean_test=0.9):
    sweep = NoiseSweep(levels=(1.0,), accuracies=np.array([[noisy_val, noisy_val]]), label="x")
    return RunResult(name=name, method=method, strength=1.0, fingerprint="f", clean_test=clean_test,
                     clean_val=clean_val, noisy_val=noisy_val, reference_variance=1.0,
                     sweeps={"uncorrelated": sweep}, history=TrainHistory([1.0], [0.5], [0.4]), train_seconds=1.0,
                     model_file="m.pt")


def test_select_best_maximizes_noisy_validation_accuracy_under_a_clean_floor():
    pool = [_result("a", "m", 0.98, 0.50), _result("b", "m", 0.96, 0.90), _result("c", "m", 0.95, 0.95),
            _result("d", "n", 0.99, 0.99)]
    assert select_best(pool, min_clean=0.955, method="m").name == "b"
    assert select_best(pool, min_clean=0.90, method="m").name == "c"
    assert select_best(pool, min_clean=0.955).name == "d"
    assert select_best(pool, min_clean=0.999) is None
    # A constraint on the test split, ranking still on validation: all four have clean_test 0.9.
    assert select_best(pool, min_clean=0.9, on="test", method="m").name == "c"
    assert select_best(pool, min_clean=0.91, on="test") is None
    with pytest.raises(ValueError, match="'val' or 'test'"):
        select_best(pool, min_clean=0.9, on="train")
    # Seed replicates are reported with their configuration, never selected on their own.
    lucky = _result("c_seed1", "m" + REPLICATE_SUFFIX, 0.99, 0.999)
    assert select_best([*pool, lucky], min_clean=0.955).name == "d"
    other = _result("c_seed2", "n" + REPLICATE_SUFFIX, 0.99, 0.5)
    assert [r.name for r in replicates([*pool, lucky, other], pool[2])] == ["c", "c_seed1"]


def test_run_result_json_round_trip():
    r = _result("a", "m", 0.9, 0.8)
    back = RunResult.from_json(json.loads(json.dumps(r.to_json())))
    assert back.to_json() == r.to_json()
    with pytest.raises(ValueError, match="format"):
        RunResult.from_json({**r.to_json(), "format": 99})


def test_issue6_grid_is_well_formed():
    runs = issue6_runs()
    names = [r.name for r in runs]
    assert len(set(names)) == len(names)
    methods = {r.method for r in runs}
    assert {"standard", "noise_aware", "explainable", "srl_physics", "vant"} <= methods
    seen: set[str] = set()
    for r in runs:
        assert r.teacher is None or r.teacher in seen
        seen.add(r.name)
        assert r.sizes == (784, 300, 300, 10)
    for family in methods - {"standard"}:
        assert sum(r.method == family for r in runs) >= 3, family  # a curve, not a point
    assert {r.method for r in quick_runs()} >= {"standard", "noise_aware"}


def test_plots_write_pngs(tmp_path, data):
    results = run_study(_runs()[:2], data, results_dir=tmp_path / "r", evaluation=EVAL)
    rs = list(results.values())
    for path in (
        plot_accuracy_vs_variance(rs, tmp_path / "acc.png", title="t"),
        plot_tradeoff({"standard": rs[:1], "noise_aware": rs[1:]}, tmp_path / "trade.png",
                      published={"paper": (0.956, 0.05)}),
        plot_chip_sweeps({"a": rs[0].sweeps["uncorrelated"]}, tmp_path / "chip.png", xlabel="v"),
    ):
        assert path.is_file() and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_markdown_table_lists_every_run_in_percent():
    table = markdown_table([_result("a", "m", 0.9, 0.8, clean_test=0.95), _result("b", "m", 0.9, 0.7)])
    lines = table.splitlines()
    assert len(lines) == 4 and lines[0].startswith("| run | clean | uncorrelated v=1")
    assert "| a | 95.00 | 80.00 +- 0.00 | 15.00 | 90.00 / 80.00 |" in lines


def test_drop_at_clean_interpolates_along_the_curve():
    # clean 0.98 -> drop 0.50, clean 0.96 -> drop 0.04, clean 0.94 -> drop 0.02 (noisy = clean - drop)
    pts = [_result(n, "m", 0.9, 0.5, clean_test=c) for n, c in (("a", 0.98), ("b", 0.96), ("c", 0.94))]
    for r, d in zip(pts, (0.50, 0.04, 0.02)):
        r.sweeps["uncorrelated"].accuracies[:] = r.clean_test - d
    assert drop_at_clean(pts, 0.97) == pytest.approx(0.27)
    assert drop_at_clean(pts, 0.95) == pytest.approx(0.03)
    assert drop_at_clean(pts, 0.96) == pytest.approx(0.04)
    assert drop_at_clean(pts, 0.99) is None and drop_at_clean(pts, 0.93) is None


def test_cache_keys_of_runs_without_later_fields_are_unchanged():
    """Fields added after results were cached (``init_from``) stay out of the key while at their default."""
    from training.study import _run_key

    run = _runs()[2]
    assert _run_key(run) == repr(run).replace(", init_from=None", "")
    tuned = StudyRun(name="t", method="m", strength=0.0, train=_cfg(), sizes=SIZES, init_from="standard")
    assert "init_from='standard'" in _run_key(tuned)


def test_measured_prior_runs_use_pi_hw_of_the_pcm_chip():
    from training.study import PHYSICS, issue6_runs, measured_pcm_prior, measured_prior_runs

    prior = measured_pcm_prior()
    assert prior == measured_pcm_prior()  # deterministic: part of the runs' cache keys
    assert "pcm" in prior.source and len(prior.probabilities) == (1 << PHYSICS.bits) - 1
    assert max(prior.probabilities) > 2 * min(prior.probabilities)  # not the uniform placeholder
    runs = measured_prior_runs()
    placeholder = {r.strength: r for r in issue6_runs() if r.method == "srl_physics"}
    for r in runs:
        assert r.recipe.prior == prior and r.recipe.physics == PHYSICS
        twin = placeholder[r.strength]  # the same network and training, only pi_hw differs
        assert (r.model, r.srl, r.train, r.sizes) == (twin.model, twin.srl, twin.train, twin.sizes)
        assert twin.recipe.prior != prior
