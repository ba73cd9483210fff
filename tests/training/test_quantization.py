"""The mid-tread quantizer, its straight-through gradient and quantization-aware training."""

from __future__ import annotations

import pytest
import torch

from training.models import MLP
from training.quantization import prepare_qat, quantization_levels, quantize_ste, strip_qat


@pytest.mark.parametrize("bits", [2, 4, 6, 8], ids=["2b", "4b", "6b", "8b"])
def test_qat_weights_use_exactly_2_pow_bits_minus_one_levels(bits):
    layer = torch.nn.Linear(200, 100)
    with torch.no_grad():
        layer.weight.uniform_(-1.0, 1.0, generator=torch.Generator().manual_seed(bits))
    w_max = float(layer.weight.detach().abs().max())
    prepare_qat(layer, bits)
    q = layer.weight.detach()
    values = torch.unique(q)
    assert values.numel() == 2**bits - 1
    torch.testing.assert_close(values.double(), quantization_levels(bits, w_max), rtol=0, atol=1e-6)
    step = w_max / (2 ** (bits - 1) - 1)
    assert float((q - layer.parametrizations.weight.original.detach()).abs().max()) <= step / 2 + 1e-6


def test_two_bits_is_ternary():
    torch.testing.assert_close(quantization_levels(2, 0.5), torch.tensor([-0.5, 0.0, 0.5], dtype=torch.float64))


def test_quantize_ste_values_and_clipping():
    x = torch.tensor([-3.0, -0.26, -0.24, 0.0, 0.74, 0.76, 5.0])
    q = quantize_ste(x, bits=3, x_max=1.5)  # levels k * 0.5, k = -3..3
    torch.testing.assert_close(q, torch.tensor([-1.5, -0.5, -0.0, 0.0, 0.5, 1.0, 1.5]))


def test_quantize_ste_gradient_is_straight_through_inside_the_range():
    x = torch.tensor([-2.0, -0.3, 0.1, 0.9, 1.0, 1.2], requires_grad=True)
    q = quantize_ste(x, bits=4, x_max=1.0)
    q.backward(torch.arange(1.0, 7.0))
    torch.testing.assert_close(x.grad, torch.tensor([0.0, 2.0, 3.0, 4.0, 5.0, 0.0]))


def test_qat_trains_the_float_master_copy():
    model = MLP((4, 6, 3), generator=torch.Generator().manual_seed(0))
    prepare_qat(model, 4)
    master = model.output.parametrizations.weight.original
    before = master.detach().clone()
    loss = model(torch.rand(5, 4)).square().sum()
    loss.backward()
    assert master.grad is not None and master.grad.abs().sum() > 0
    with torch.no_grad():
        master -= 0.1 * master.grad
    assert not torch.equal(before, master)
    strip_qat(model)
    assert torch.unique(model.output.weight.detach()).numel() <= 15
    assert not hasattr(model.output, "parametrizations")


@pytest.mark.parametrize("bits", [1, 17, 4.0, True], ids=["one", "seventeen", "float", "bool"])
def test_bits_validation(bits):
    with pytest.raises(ValueError, match="bits"):
        quantize_ste(torch.zeros(2), bits=bits, x_max=1.0)


def test_prepare_qat_twice_is_an_error():
    layer = torch.nn.Linear(2, 2)
    prepare_qat(layer, 4)
    with pytest.raises(ValueError, match="already parametrized"):
        prepare_qat(layer, 4)
