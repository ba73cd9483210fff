"""Explainable regularizers: hand-computed values on a tiny network, and exact gradients."""

from __future__ import annotations

import math

import pytest
import torch

from training.activations import ActivationKind
from training.models import MLP, SmallCNN
from training.regularizers import (
    ExplainableRegularization,
    explainable_penalty,
    l2_penalty,
    row_sum_penalty,
    saturation_penalty,
)

W2 = [[1.0, -2.0], [3.0, 0.5]]  # row sums -1, 3.5
WOUT = [[0.5, 0.5], [-1.0, 2.0]]  # row sums 1, 1


def _f(t: torch.Tensor) -> float:
    return float(t.detach())


def _sigmoid_prime(z: float) -> float:
    s = 1.0 / (1.0 + math.exp(-z))
    return s * (1.0 - s)


@pytest.fixture
def tiny_mlp() -> MLP:
    """2-2-2-2 sigmoid MLP with W1 = 0, b = 0, so h1 = (0.5, 0.5) and z2 = W2 h1 = (-0.5, 1.75)."""
    model = MLP((2, 2, 2, 2)).double()
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
        model.hidden[1].weight.copy_(torch.tensor(W2))
        model.output.weight.copy_(torch.tensor(WOUT))
    return model


def test_row_sum_penalty_by_hand():
    value = row_sum_penalty([torch.tensor(W2), torch.tensor(WOUT)])
    assert float(value) == pytest.approx(abs(-1.0) + abs(3.5) + 1.0 + 1.0)


def test_row_sum_of_conv_weights_sums_over_inputs_and_kernel():
    w = torch.zeros(2, 3, 2, 2)
    w[0] = 0.25  # row sum 3
    w[1, 0] = -1.0  # row sum -4
    assert float(row_sum_penalty([w])) == pytest.approx(7.0)


def test_l2_penalty_by_hand():
    assert float(l2_penalty([torch.tensor(W2)])) == pytest.approx(1 + 4 + 9 + 0.25)
    assert float(l2_penalty([torch.tensor(W2), torch.tensor(WOUT)])) == pytest.approx(14.25 + 0.25 + 0.25 + 1 + 4)


def test_saturation_penalty_by_hand():
    z = torch.tensor([[-0.5, 1.75], [0.0, 1.75]])
    expected = ((_sigmoid_prime(-0.5) + _sigmoid_prime(1.75)) + (0.25 + _sigmoid_prime(1.75))) / 2
    assert float(saturation_penalty([z], ActivationKind.SIGMOID)) == pytest.approx(expected)


def test_explainable_penalty_on_tiny_network_by_hand(tiny_mlp):
    cfg = ExplainableRegularization(row_sum=1.0, saturation=2.0, l2_hidden=3.0, l2_output=4.0)
    trace = tiny_mlp.trace(torch.zeros(3, 2, dtype=torch.float64))
    expected = (
        1.0 * (1.0 + 3.5 + 1.0 + 1.0)
        + 2.0 * (_sigmoid_prime(-0.5) + _sigmoid_prime(1.75))
        + 3.0 * 14.25
        + 4.0 * 5.5
    )
    assert _f(explainable_penalty(tiny_mlp, trace, cfg)) == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize(
    "field, expected",
    [("row_sum", 6.5), ("l2_hidden", 14.25), ("l2_output", 5.5),
     ("saturation", _sigmoid_prime(-0.5) + _sigmoid_prime(1.75))],
    ids=["row_sum", "l2_hidden", "l2_output", "saturation"],
)
def test_each_term_switches_on_alone(tiny_mlp, field, expected):
    trace = tiny_mlp.trace(torch.zeros(1, 2, dtype=torch.float64))
    value = explainable_penalty(tiny_mlp, trace, ExplainableRegularization(**{field: 1.0}))
    assert _f(value) == pytest.approx(expected, rel=1e-12)


def _rand(*shape, seed=0):
    return torch.randn(*shape, dtype=torch.float64, generator=torch.Generator().manual_seed(seed)).requires_grad_()


@pytest.mark.parametrize(
    "fn, args",
    [
        (lambda a, b: row_sum_penalty([a, b]), (_rand(3, 4, seed=1), _rand(2, 3, seed=2))),
        (lambda a, b: l2_penalty([a, b]), (_rand(3, 4, seed=3), _rand(2, 3, seed=4))),
        (lambda z: saturation_penalty([z], ActivationKind.SIGMOID), (_rand(5, 3, seed=5),)),
        (lambda z: saturation_penalty([z], ActivationKind.PHOTONIC_SIGMOID), (0.05 * _rand(5, 3, seed=6).detach() + 0.15,)),
        (lambda z: saturation_penalty([z], ActivationKind.TANH), (_rand(4, 2, seed=7),)),
    ],
    ids=["row_sum", "l2", "saturation-sigmoid", "saturation-photonic", "saturation-tanh"],
)
def test_regularizer_gradients_are_exact(fn, args):
    args = tuple(a.detach().requires_grad_() for a in args)
    assert torch.autograd.gradcheck(fn, args)


def test_penalty_gradient_reaches_every_regularized_layer():
    model = SmallCNN(generator=torch.Generator().manual_seed(0))
    trace = model.trace(torch.rand(2, 1, 28, 28))
    cfg = ExplainableRegularization(row_sum=1.0, saturation=1.0, l2_hidden=1.0, l2_output=1.0)
    explainable_penalty(model, trace, cfg).backward()
    for layer in (model.conv2, model.output):
        assert layer.weight.grad is not None and layer.weight.grad.abs().sum() > 0
    assert model.conv1.weight.grad.abs().sum() > 0  # through the saturation term's pre-activations


def test_validation():
    with pytest.raises(ValueError, match=r"ExplainableRegularization\.row_sum = -1"):
        ExplainableRegularization(row_sum=-1.0)
    with pytest.raises(ValueError, match="sequence of tensors"):
        row_sum_penalty(torch.zeros(2, 2))
    assert ExplainableRegularization(row_sum=1.0, l2_output=2.0).scaled(0.5) == ExplainableRegularization(
        row_sum=0.5, l2_output=1.0
    )
