"""Trainer: every method runs, checkpoints are atomic, an interrupted run resumes to identical weights."""

from __future__ import annotations

import math

import pytest
import torch

from training.datasets import Dataset
from training.distillation import Distillation, distillation_loss
from training.models import MLP, ResidualMLP
from training.noise import ActivationNoise, NoiseCorrelation, VANTConfig
from training.physics_loss import PhysicsInformedLoss, uniform_level_prior
from training.quantization import prepare_qat
from training.regularizers import ExplainableRegularization
from training.checkpoint import load_checkpoint, save_checkpoint
from training.srl import SRLConfig
from training.trainer import LRSchedule, OptimizerKind, Recipe, TrainConfig, Trainer

PRIOR = uniform_level_prior(4, 1.0)


class _Interrupt(Exception):
    pass


def _mlp(seed=0):
    return MLP((64, 16, 16, 4), generator=torch.Generator().manual_seed(seed))


def _srl_model(seed=0):
    return ResidualMLP(in_features=64, width=16, n_blocks=1, n_classes=4, srl=SRLConfig(beta=0.05, bits=6),
                       generator=torch.Generator().manual_seed(seed))


RECIPES = {
    "standard": Recipe(),
    "noise-aware": Recipe(train_noise=(ActivationNoise(variance=0.1),
                                       ActivationNoise(variance=0.05, correlation=NoiseCorrelation.CORRELATED))),
    "vant": Recipe(vant=VANTConfig(sigma_train=0.3, theta=0.2)),
    "explainable": Recipe(explainable=ExplainableRegularization(row_sum=1e-3, saturation=1e-2, l2_hidden=1e-3,
                                                                l2_output=1e-3)),
    "physics": Recipe(physics=PhysicsInformedLoss(lambda_clip=1.0, lambda_kl=0.1, w_max=1.0), prior=PRIOR),
    "distillation": Recipe(distillation=Distillation(temperature=2.0, alpha=0.5)),
}


@pytest.mark.parametrize("name", list(RECIPES), ids=list(RECIPES))
def test_every_method_trains(tiny_dataset, name):
    model = _mlp()
    teacher = _mlp(seed=5) if name == "distillation" else None
    before = [p.detach().clone() for p in model.parameters()]
    cfg = TrainConfig(epochs=2, batch_size=32, learning_rate=1e-2)
    history = Trainer(model, tiny_dataset, config=cfg, recipe=RECIPES[name], teacher=teacher,
                      eval_data=tiny_dataset, progress=False).fit()
    assert history.epochs_completed == 2 and all(math.isfinite(v) for v in history.train_loss)
    assert len(history.eval_accuracy) == 2
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))


def test_standard_training_learns_the_tiny_task(tiny_dataset):
    model = _mlp()
    cfg = TrainConfig(epochs=15, batch_size=16, learning_rate=1e-2, lr_schedule=LRSchedule.COSINE)
    history = Trainer(model, tiny_dataset, config=cfg, eval_data=tiny_dataset, progress=False).fit()
    assert history.train_loss[-1] < 0.5 * history.train_loss[0]
    assert history.eval_accuracy[-1] > 0.6  # 4 classes: chance is 0.25


def _run(tmp_path, data, *, model_seed, interrupt_at=None, qat=False, optimizer=OptimizerKind.ADAM):
    model = _srl_model(model_seed)
    if qat:
        prepare_qat(model, 6)
    recipe = Recipe(vant=VANTConfig(sigma_train=0.2, theta=0.1),
                    explainable=ExplainableRegularization(saturation=1e-2, l2_output=1e-3),
                    physics=PhysicsInformedLoss(lambda_clip=0.1, lambda_kl=0.01, w_max=1.0), prior=PRIOR)
    cfg = TrainConfig(epochs=3, batch_size=20, learning_rate=5e-3, seed=7, optimizer=optimizer,
                      lr_schedule=LRSchedule.COSINE)

    def callback(epoch, step):
        if interrupt_at == (epoch, step):
            raise _Interrupt

    trainer = Trainer(model, data, config=cfg, recipe=recipe, checkpoint_path=tmp_path / "run.pt",
                      progress=False, step_callback=callback)
    try:
        history = trainer.fit()
    except _Interrupt:
        return None, None
    return model, history


@pytest.mark.parametrize("qat", [False, True], ids=["float", "qat"])
@pytest.mark.parametrize("optimizer", [OptimizerKind.ADAM, OptimizerKind.SGD], ids=["adam", "sgd"])
def test_interrupted_run_resumes_to_identical_weights(tmp_path, tiny_dataset, qat, optimizer):
    reference, ref_history = _run(tmp_path / "a", tiny_dataset, model_seed=0, qat=qat, optimizer=optimizer)
    # Crash in the middle of the second epoch, then resume with a fresh (differently initialized) model.
    model, _ = _run(tmp_path / "b", tiny_dataset, model_seed=0, interrupt_at=(1, 2), qat=qat, optimizer=optimizer)
    assert model is None
    assert load_checkpoint(tmp_path / "b" / "run.pt")["epochs_completed"] == 1
    resumed, history = _run(tmp_path / "b", tiny_dataset, model_seed=99, qat=qat, optimizer=optimizer)
    ref_state, new_state = reference.state_dict(), resumed.state_dict()
    assert ref_state.keys() == new_state.keys()
    for key in ref_state:
        assert torch.equal(ref_state[key], new_state[key]), key
    assert history.train_loss == ref_history.train_loss


def test_resuming_a_finished_run_does_nothing_and_other_runs_are_refused(tmp_path, tiny_dataset):
    model, _ = _run(tmp_path, tiny_dataset, model_seed=0)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    again, _ = _run(tmp_path, tiny_dataset, model_seed=3)
    assert all(torch.equal(state[k], v) for k, v in again.state_dict().items())
    other = Trainer(_srl_model(), tiny_dataset, config=TrainConfig(epochs=3, seed=8),
                    checkpoint_path=tmp_path / "run.pt", progress=False)
    with pytest.raises(ValueError, match="different run"):
        other.fit()


def test_checkpoint_is_atomic_and_weights_only(tmp_path, monkeypatch):
    path = tmp_path / "ck.pt"
    save_checkpoint(path, {"a": torch.ones(2), "n": 3})
    original = path.read_bytes()

    def crash(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", crash)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(path, {"a": torch.zeros(2)})
    assert path.read_bytes() == original  # the good checkpoint survived
    assert [p.name for p in tmp_path.iterdir()] == ["ck.pt"]  # no temporary file left behind
    monkeypatch.undo()
    assert torch.equal(load_checkpoint(path)["a"], torch.ones(2))
    torch.save({"obj": _Interrupt()}, tmp_path / "evil.pt")
    with pytest.raises(Exception, match="Weights only load failed"):
        load_checkpoint(tmp_path / "evil.pt")


def test_distillation_loss_by_hand():
    s = torch.tensor([[1.0, 0.0]], dtype=torch.float64)
    t = torch.tensor([[0.0, 2.0]], dtype=torch.float64)
    y = torch.tensor([0])
    cfg = Distillation(temperature=2.0, alpha=0.25)
    ps = torch.softmax(s / 2, 1)[0]
    pt = torch.softmax(t / 2, 1)[0]
    kl = float((pt * (pt / ps).log()).sum())
    ce = -math.log(float(torch.softmax(s, 1)[0, 0]))
    assert float(distillation_loss(s, t, y, cfg)) == pytest.approx(0.25 * 4 * kl + 0.75 * ce)


def test_distillation_gradient_is_exact():
    t = torch.randn(3, 4, dtype=torch.float64)
    y = torch.tensor([0, 3, 1])
    cfg = Distillation(temperature=3.0, alpha=0.7)
    s = torch.randn(3, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda v: distillation_loss(v, t, y, cfg), (s,))


@pytest.mark.parametrize(
    "build, message",
    [
        (lambda: TrainConfig(epochs=0), r"TrainConfig\.epochs = 0"),
        (lambda: TrainConfig(epochs=1, learning_rate=-1.0), r"TrainConfig\.learning_rate = -1"),
        (lambda: TrainConfig(epochs=1, optimizer="rmsprop"), r"TrainConfig\.optimizer = 'rmsprop'"),
        (lambda: Recipe(vant=VANTConfig(sigma_train=1.0), train_noise=(ActivationNoise(variance=1.0),)), "exclusive"),
        (lambda: Recipe(physics=PhysicsInformedLoss()), "needs Recipe.prior"),
        (lambda: Recipe(train_noise=(0.5,)), "ActivationNoise"),
    ],
    ids=["epochs", "lr", "optimizer", "vant-and-noise", "physics-without-prior", "bad-noise"],
)
def test_config_validation(build, message):
    with pytest.raises(ValueError, match=message):
        build()


def test_trainer_argument_checks(tiny_dataset):
    with pytest.raises(ValueError, match="needs a teacher"):
        Trainer(_mlp(), tiny_dataset, config=TrainConfig(epochs=1), recipe=RECIPES["distillation"])
    with pytest.raises(ValueError, match="NoiseAwareModel"):
        Trainer(torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 4)), tiny_dataset,
                config=TrainConfig(epochs=1), recipe=RECIPES["explainable"])
    empty = Dataset(images=torch.zeros(0, 1, 8, 8), labels=torch.zeros(0, dtype=torch.int64), n_classes=4, name="e")
    with pytest.raises(ValueError, match="empty"):
        Trainer(_mlp(), empty, config=TrainConfig(epochs=1))


def test_per_epoch_noisy_evaluation_is_recorded_and_never_perturbs_training(tiny_dataset):
    recipe = Recipe(train_noise=(ActivationNoise(variance=0.2),))
    cfg = TrainConfig(epochs=3, batch_size=16, learning_rate=1e-2, seed=4)
    plain, noisy_eval = _mlp(), _mlp()
    Trainer(plain, tiny_dataset, config=cfg, recipe=recipe, eval_data=tiny_dataset, progress=False).fit()
    history = Trainer(noisy_eval, tiny_dataset, config=cfg, recipe=recipe, eval_data=tiny_dataset, progress=False,
                      eval_noise=ActivationNoise(variance=4.0), eval_noise_draws=3).fit()
    for a, b in zip(plain.state_dict().values(), noisy_eval.state_dict().values()):
        assert torch.equal(a, b)  # evaluation draws come from their own generator
    assert len(history.eval_noisy_accuracy) == 3
    assert sum(history.eval_noisy_accuracy) < sum(history.eval_accuracy)  # variance 4 on sigmoid outputs hurts
    with pytest.raises(ValueError, match="eval_noise needs eval_data"):
        Trainer(_mlp(), tiny_dataset, config=cfg, eval_noise=ActivationNoise(variance=1.0))
