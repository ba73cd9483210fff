"""Models: shapes, noise points, traces, activations and seeded initialization."""

from __future__ import annotations

import pytest
import torch

from training.activations import (
    PHOTONIC_SIGMOID_A1,
    PHOTONIC_SIGMOID_A2,
    PHOTONIC_SIGMOID_D,
    PHOTONIC_SIGMOID_X0,
    ActivationKind,
    activation_derivative,
    make_activation,
    photonic_sigmoid,
)
from training.models import MLP, SmallCNN
from training.noise import noise_points


def test_photonic_sigmoid_matches_published_form():
    z = torch.linspace(-0.2, 0.5, 29, dtype=torch.float64)
    published = PHOTONIC_SIGMOID_A2 + (PHOTONIC_SIGMOID_A1 - PHOTONIC_SIGMOID_A2) / (
        1 + torch.exp((z - PHOTONIC_SIGMOID_X0) / PHOTONIC_SIGMOID_D)
    )
    torch.testing.assert_close(photonic_sigmoid(z), published)
    assert torch.isfinite(photonic_sigmoid(torch.tensor([1e4, -1e4]))).all()  # no exp overflow


@pytest.mark.parametrize("kind", list(ActivationKind), ids=[k.value for k in ActivationKind])
def test_activation_derivative_matches_autograd(kind):
    z = torch.linspace(-3, 3, 41, dtype=torch.float64) + 0.013  # avoid ReLU's kink at 0
    if kind is ActivationKind.PHOTONIC_SIGMOID:
        z = torch.linspace(-0.1, 0.4, 41, dtype=torch.float64)
    z.requires_grad_(True)
    make_activation(kind)(z).sum().backward()
    torch.testing.assert_close(activation_derivative(kind, z.detach()), z.grad)


def test_mlp_structure_and_trace():
    model = MLP(generator=torch.Generator().manual_seed(0))
    assert [w.shape for w in model.programmed_weights()] == [(300, 784), (300, 300), (10, 300)]
    assert len(noise_points(model)) == 2
    assert model.downstream_layers() == [model.hidden[1], model.output]
    x = torch.rand(3, 1, 28, 28)
    trace = model.trace(x)
    assert trace.logits.shape == (3, 10) and len(trace.noisy_preactivations) == 1
    torch.testing.assert_close(trace.noisy_preactivations[0],
                               model.hidden[1](torch.sigmoid(model.hidden[0](x.flatten(1)))))


def test_same_generator_seed_same_network():
    a = MLP((5, 4, 3), generator=torch.Generator().manual_seed(11))
    b = MLP((5, 4, 3), generator=torch.Generator().manual_seed(11))
    c = MLP((5, 4, 3), generator=torch.Generator().manual_seed(12))
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    assert not all(torch.equal(p, q) for p, q in zip(a.parameters(), c.parameters()))
    bound = 1 / 5**0.5
    assert float(a.hidden[0].weight.detach().abs().max()) <= bound


@pytest.mark.parametrize("in_channels, size", [(1, 28), (3, 32)], ids=["mnist", "cifar"])
def test_small_cnn_shapes(in_channels, size):
    model = SmallCNN(in_channels=in_channels, image_size=size, generator=torch.Generator().manual_seed(0))
    trace = model.trace(torch.rand(2, in_channels, size, size))
    assert trace.logits.shape == (2, 10) and trace.noisy_preactivations[0].shape == (2, 16, size // 2, size // 2)
    assert len(noise_points(model)) == 2 and model.downstream_layers()[-1] is model.output


@pytest.mark.parametrize(
    "build, message",
    [(lambda: MLP((784,)), "at least an input"), (lambda: MLP((784, 0, 10)), r"sizes\[1\]"),
     (lambda: SmallCNN(image_size=30), "divisible by 4"), (lambda: MLP(activation="swish"), "swish")],
    ids=["one-size", "zero-width", "cnn-size", "bad-activation"],
)
def test_model_validation(build, message):
    with pytest.raises(ValueError, match=message):
        build()
