"""The torch bridge's layers: exact and straight-through gradients, ideal equivalence, lazy programming,
read conditions, dtypes and devices, bad input. Also holds the small models and chips the other bridge
tests use (test_bridge_convert.py, test_bridge_state_io.py, test_bridge_training.py)."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from torch import nn
from torch.func import functional_call

from crossbar import Activation, ActivationConfig, Chip, ChipConfig, NoiseKind, Stages, TileConfig
from crossbar.nn import (
    AnalogActivation,
    AnalogConv2d,
    AnalogLinear,
    ReadConditions,
    analog_layers,
    convert_to_analog,
    program_analog,
    programming_count,
    reseed_analog,
    set_read_conditions,
)
from crossbar.nn.functional import _im2col, analog_conv2d, analog_linear, conv_weight_matrix
from tests.crossbar.profiles_for_tests import noisy_profile

SMALL_TILES = TileConfig(rows=16, cols=8)
"""Tiles smaller than the layers, so every test exercises the tiled MVM and its digital partial sums."""


def ideal_chip(seed: int = 0, profile: str = "pcm") -> Chip:
    """Every stage off (ideal converters, no noise, no drift): the chip computes W x to float precision."""
    return Chip(profile, ChipConfig(tile=SMALL_TILES, stages=Stages.all_off()), seed=seed)


def noisy_chip(seed: int = 0, profile: str = "pcm", **config: object) -> Chip:
    """Default stages (programming and read noise, converters, drift, temperature) on small tiles."""
    return Chip(profile, ChipConfig(tile=SMALL_TILES, **config), seed=seed)  # type: ignore[arg-type]


def mlp(dtype: torch.dtype = torch.float32, sizes: tuple[int, ...] = (20, 24, 12, 4)) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(a, b, dtype=dtype))
        if i < len(sizes) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


def cnn(dtype: torch.dtype = torch.float32) -> nn.Sequential:
    """Input (N, 2, 8, 8) -> 5 logits."""
    return nn.Sequential(
        nn.Conv2d(2, 4, 3, padding=1, dtype=dtype),
        nn.ReLU(),
        nn.Conv2d(4, 6, 3, stride=2, padding_mode="reflect", dtype=dtype),
        nn.Tanh(),
        nn.Flatten(),
        nn.Linear(6 * 3 * 3, 5, dtype=dtype),
    )


F64 = torch.float64


# ---------------------------------------------------------------------------------------- exact gradients
def test_gradcheck_functional_linear_all_stages_off() -> None:
    g = torch.Generator().manual_seed(0)
    chip = ideal_chip()
    x = torch.randn(2, 1, 20, dtype=F64, generator=g, requires_grad=True)  # 20 x 9: 2 x 2 tiles of 16 x 8
    w = torch.randn(9, 20, dtype=F64, generator=g, requires_grad=True)
    b = torch.randn(9, dtype=F64, generator=g, requires_grad=True)

    def f(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return analog_linear(x, w, b, matrix=chip.program(w.detach().numpy()))

    assert torch.autograd.gradcheck(f, (x, w, b))


@pytest.mark.parametrize(
    "channels, kwargs",
    [
        (2, {}),
        (9, {"stride": (2, 1), "padding": (1, 2), "dilation": (1, 2)}),
        (2, {"padding": "same"}),
        (9, {"padding": "same", "dilation": 3}),
    ],
    ids=["plain", "stride-pad-dilation", "same-asymmetric", "same-dilated"],  # 2 and 9 channels: both unfold layouts
)
@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel lengths:UserWarning")
def test_gradcheck_functional_conv2d_all_stages_off(channels: int, kwargs: dict) -> None:
    g = torch.Generator().manual_seed(12)
    chip = ideal_chip()
    x = torch.randn(2, channels, 5, 6, dtype=F64, generator=g, requires_grad=True)
    w = torch.randn(3, channels, 2, 3, dtype=F64, generator=g, requires_grad=True)
    b = torch.randn(3, dtype=F64, generator=g, requires_grad=True)

    def f(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return analog_conv2d(x, w, b, matrix=chip.program(conv_weight_matrix(w).detach().numpy()), **kwargs)

    torch.testing.assert_close(f(x, w, b), nn.functional.conv2d(x, w, b, **kwargs), rtol=1e-12, atol=1e-12)
    # fast mode: the Jacobian in random directions (every evaluation programs the chip anew)
    assert torch.autograd.gradcheck(f, (x, w, b), fast_mode=True)


def test_gradcheck_analog_activation_for_the_drawn_noise() -> None:
    """The activation noise is reparameterized: for a fixed draw the gradient is exact."""
    x = torch.randn(4, 6, dtype=F64, generator=torch.Generator().manual_seed(13), requires_grad=True)
    for kind in NoiseKind:
        act = AnalogActivation(ActivationConfig(function=Activation.TANH, kind=kind, uncorrelated_std_rel=0.1, correlated_std_rel=0.05))

        def f(x: torch.Tensor) -> torch.Tensor:
            act.reseed(0)  # the same noise draw at every evaluation of gradcheck
            return act(x)

        assert not torch.equal(f(x), torch.tanh(x))
        assert torch.autograd.gradcheck(f, (x,))


@pytest.mark.parametrize(
    "kwargs",
    [{}, {"stride": 2, "padding": 1}, {"padding": "same", "dilation": 2}, {"padding": (0, 2), "padding_mode": "circular"}],
    ids=["plain", "stride-pad", "same-dilated", "circular"],
)
def test_gradcheck_conv2d_module_all_stages_off(kwargs: dict) -> None:
    """Through the module: the layer re-programs lazily when functional_call swaps in other weights.

    gradcheck perturbs its inputs through ``.data``, which bypasses torch's version counter, so each call
    passes a fresh tensor (``w * 1``); the layer then compares values and re-programs when they differ.
    """
    torch.manual_seed(1)
    layer = AnalogConv2d(2, 3, (3, 2), chip=ideal_chip(), dtype=F64, **kwargs)
    x = torch.randn(1, 2, 5, 5, dtype=F64, requires_grad=True)
    w = layer.weight.detach().clone().requires_grad_(True)
    b = layer.bias.detach().clone().requires_grad_(True)

    def f(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return functional_call(layer, {"weight": w * 1, "bias": b}, (x,))

    assert torch.autograd.gradcheck(f, (x, w, b))


def test_gradcheck_linear_module_all_stages_off() -> None:
    torch.manual_seed(2)
    layer = AnalogLinear(20, 6, chip=ideal_chip(), dtype=F64)
    x = torch.randn(4, 20, dtype=F64, requires_grad=True)
    w = layer.weight.detach().clone().requires_grad_(True)

    def f(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        return functional_call(layer, {"weight": w * 1, "bias": layer.bias}, (x,))

    assert torch.autograd.gradcheck(f, (x, w))


# ---------------------------------------------------------------------------------------- straight-through
@pytest.mark.parametrize("kind", ["linear", "conv2d"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
def test_straight_through_gradient_equals_the_ideal_surrogate(kind: str, dtype: torch.dtype) -> None:
    """With every stage on, the backward pass is declared to be the ideal layer's: compare with torch's."""
    torch.manual_seed(3)
    chip = noisy_chip(seed=4)
    if kind == "linear":
        digital: nn.Module = nn.Linear(20, 9, dtype=dtype)
        analog: nn.Module = AnalogLinear.from_linear(digital, chip=chip)
        x = torch.randn(5, 20, dtype=dtype)
    else:
        digital = nn.Conv2d(2, 3, 3, padding=1, stride=2, dtype=dtype)
        analog = AnalogConv2d.from_conv2d(digital, chip=chip)
        x = torch.randn(2, 2, 7, 6, dtype=dtype)
    grads = []
    for model in (analog, digital):
        xi = x.clone().requires_grad_(True)
        y = model(xi)
        upstream = torch.linspace(-1, 1, y.numel(), dtype=dtype).reshape(y.shape)
        parameters = [xi, *model.parameters()]
        grads.append(torch.autograd.grad((y * upstream).sum(), parameters))
    assert not torch.equal(analog(x), digital(x))  # the forward pass is the noisy chip ...
    tol = 1e-5 if dtype == torch.float32 else 1e-12
    for ga, gd in zip(*grads):  # ... the backward pass the ideal map
        assert ga.dtype == dtype
        torch.testing.assert_close(ga, gd, rtol=tol, atol=tol)


# ---------------------------------------------------------------------------------------- ideal equivalence
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("arch", ["mlp", "cnn"])
def test_converted_model_with_all_stages_off_matches_the_digital_model(arch: str, dtype: torch.dtype) -> None:
    torch.manual_seed(5)
    model = mlp(dtype) if arch == "mlp" else cnn(dtype)
    x = torch.randn(7, 20, dtype=dtype) if arch == "mlp" else torch.randn(3, 2, 8, 8, dtype=dtype)
    analog = convert_to_analog(model, ideal_chip())
    y, expected = analog(x), model(x)
    assert y.dtype == dtype
    tol = 2e-6 if dtype == torch.float32 else 1e-13
    torch.testing.assert_close(y, expected, rtol=tol, atol=tol * float(expected.detach().abs().max()))


@pytest.mark.parametrize(
    "kwargs",
    [
        {"kernel_size": 3},
        {"kernel_size": (2, 3), "stride": (2, 1), "padding": (1, 0)},
        {"kernel_size": 2, "padding": "same"},
        {"kernel_size": 3, "padding": "valid", "dilation": 2},
        {"kernel_size": 3, "padding": 1, "padding_mode": "replicate", "bias": False},
    ],
    ids=["k3", "rect-stride", "same-even-kernel", "valid-dilated", "replicate-nobias"],
)
@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel lengths:UserWarning")  # torch's own conv
def test_analog_conv2d_matches_nn_conv2d_with_all_stages_off(kwargs: dict) -> None:
    torch.manual_seed(6)
    conv = nn.Conv2d(3, 5, dtype=F64, **kwargs)
    analog = AnalogConv2d.from_conv2d(conv, chip=ideal_chip())
    for x in (torch.randn(2, 3, 7, 6, dtype=F64), torch.randn(3, 7, 6, dtype=F64)):  # batched and unbatched
        torch.testing.assert_close(analog(x), conv(x), rtol=1e-12, atol=1e-12)


def test_linear_accepts_any_leading_shape_and_an_empty_batch() -> None:
    torch.manual_seed(7)
    linear = nn.Linear(20, 3, dtype=F64)
    analog = AnalogLinear.from_linear(linear, chip=ideal_chip())
    for shape in [(20,), (2, 3, 20), (0, 20)]:
        x = torch.randn(*shape, dtype=F64)
        torch.testing.assert_close(analog(x), linear(x), rtol=1e-12, atol=1e-12)


@given(
    n=st.integers(1, 3),
    c=st.sampled_from([1, 3, 8, 11]),
    h=st.integers(1, 9),
    w=st.integers(1, 9),
    kh=st.integers(1, 4),
    kw=st.integers(1, 4),
    stride=st.tuples(st.integers(1, 3), st.integers(1, 3)),
    padding=st.tuples(st.integers(0, 2), st.integers(0, 2)),
    dilation=st.tuples(st.integers(1, 2), st.integers(1, 2)),
    channels_last=st.booleans(),
)
def test_im2col_matches_torch_unfold(n, c, h, w, kh, kw, stride, padding, dilation, channels_last) -> None:
    """The bridge's unfold (both layouts, any input strides) is torch's ``F.unfold`` transposed to rows."""
    if h + 2 * padding[0] < dilation[0] * (kh - 1) + 1 or w + 2 * padding[1] < dilation[1] * (kw - 1) + 1:
        return  # kernel larger than the padded input
    x = torch.randn(n, c, h, w, dtype=F64, generator=torch.Generator().manual_seed(n * 1000 + c * 100 + h * 10 + w))
    if channels_last:
        x = x.to(memory_format=torch.channels_last)
    cols = _im2col(x, (kh, kw), stride, padding, dilation)
    expected = nn.functional.unfold(x, (kh, kw), dilation=dilation, padding=padding, stride=stride)
    expected = expected.transpose(1, 2).reshape(-1, c * kh * kw)
    assert cols.is_contiguous() and cols.dtype == F64
    assert torch.equal(cols, expected)


@pytest.mark.parametrize("kind", ["linear", "conv2d"])
def test_no_grad_path_equals_the_autograd_path_and_layouts_do_not_matter(kind: str) -> None:
    """Inference skips the autograd node; it must compute exactly what the training path computes."""
    torch.manual_seed(14)
    chip = noisy_chip(seed=5)
    if kind == "linear":
        layer: nn.Module = AnalogLinear(20, 9, chip=chip)
        x = torch.randn(20, 6).t()  # non-contiguous
    else:
        layer = AnalogConv2d(9, 4, 3, padding=1, chip=chip)
        x = torch.randn(2, 9, 5, 6).to(memory_format=torch.channels_last)
    outputs = []
    for mode in ("grad", "no_grad", "inference", "contiguous"):
        layer.reseed(7)
        xi = x.contiguous() if mode == "contiguous" else x
        if mode == "grad":
            outputs.append(layer(xi.clone().requires_grad_(True)).detach())
        elif mode == "inference":
            with torch.inference_mode():
                outputs.append(layer(xi).clone())
        else:
            with torch.no_grad():
                outputs.append(layer(xi))
    for y in outputs[1:]:
        assert y.is_contiguous() and torch.equal(y, outputs[0])
    assert layer.n_programmings == 1


# ---------------------------------------------------------------------------------------- lazy programming
def test_programming_is_lazy_and_counted() -> None:
    torch.manual_seed(8)
    model = convert_to_analog(mlp(), noisy_chip())
    x = torch.randn(16, 20)
    assert programming_count(model) == 0
    model(x)
    model(x)
    assert programming_count(model) == 3  # once per layer, at the first forward

    model.eval()
    with torch.no_grad():
        for _ in range(3):
            model(x)
    assert programming_count(model) == 3  # inference on a programmed model never re-programs

    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    model(x).square().mean().backward()
    opt.step()  # changes every weight in place (version counters move)
    model(x)
    model(x)
    assert programming_count(model) == 6  # once per weight change

    set_read_conditions(model, ReadConditions(time_sec=1e5, temperature_kelvin=320.0, drift_compensation=True))
    reseed_analog(model, 3)
    model.load_state_dict(model.state_dict())  # touches the weights in place, same values
    model(x)
    assert programming_count(model) == 6

    first = model[0]
    with torch.no_grad():
        first.weight[0, 0] += 1.0
    model(x)
    assert first.n_programmings == 3 and programming_count(model) == 7  # only the changed layer

    first.weight.data = first.weight.data.clone() * 2  # replaced storage, no version bump
    model(x)
    assert first.n_programmings == 4

    assert program_analog(model) == 3 and programming_count(model) == 11  # explicit: every layer
    assert program_analog(model, only_changed=True) == 0


def test_reprogramming_draws_new_devices_and_keeps_the_read_conditions() -> None:
    layer = AnalogLinear(20, 8, chip=noisy_chip(), read_conditions=ReadConditions(time_sec=1e4))
    first = layer.program()
    second = layer.program()
    assert not np.array_equal(first.conductances_siemens(), second.conductances_siemens())
    assert layer.read_conditions.time_sec == 1e4 and layer.n_programmings == 2


# ---------------------------------------------------------------------------------------- read conditions
def test_time_temperature_and_drift_compensation_change_reads_without_reprogramming() -> None:
    torch.manual_seed(9)
    digital = nn.Linear(20, 8, dtype=F64)
    # The shipped profiles carry no sourced temperature coefficients; the synthetic test profile has them.
    chip = Chip(noisy_profile(), ChipConfig(tile=SMALL_TILES, stages=Stages.only("drift", "temperature")), seed=1)
    layer = AnalogLinear.from_linear(digital, chip=chip)
    x = torch.randn(32, 20, dtype=F64)
    with torch.no_grad():
        expected = digital(x)
        fresh = layer(x)
        torch.testing.assert_close(fresh, expected)  # no drift at t0

        def error(conditions: ReadConditions) -> float:
            layer.read_conditions = conditions
            return float((layer(x) - expected).norm() / expected.norm())

        year = 3.15e7
        drifted = error(ReadConditions(time_sec=year))
        hot = error(ReadConditions(time_sec=year, temperature_kelvin=340.0))
        compensated = error(ReadConditions(time_sec=year, drift_compensation=True))
        back = error(ReadConditions())
    assert drifted > 0.05  # drift shrinks outputs
    assert abs(hot - drifted) > 0.02  # temperature changes both conductance and drift rate, no reprogramming
    assert compensated < 0.3 * drifted  # global compensation removes most of the mean drift
    assert back < 1e-12
    assert layer.n_programmings == 1


def test_set_read_conditions_sets_all_or_only_the_named_fields() -> None:
    model = convert_to_analog(mlp(), ideal_chip())
    set_read_conditions(model, ReadConditions(time_sec=10.0, temperature_kelvin=320.0))
    set_read_conditions(model, time_sec=1e4)  # advance the time, keep the temperature
    assert [layer.read_conditions for _, layer in analog_layers(model)] == [ReadConditions(time_sec=1e4, temperature_kelvin=320.0)] * 3
    set_read_conditions(model, ReadConditions(drift_compensation=True), time_sec=5.0)
    assert {layer.read_conditions for _, layer in analog_layers(model)} == {ReadConditions(time_sec=5.0, drift_compensation=True)}
    with pytest.raises(ValueError, match="give a ReadConditions or the fields to change"):
        set_read_conditions(model)
    with pytest.raises(ValueError, match="unknown read condition 'time'; read conditions are drift_compensation, temperature_kelvin, time_sec"):
        set_read_conditions(model, time=1.0)
    with pytest.raises(ValueError, match="time_sec = -1.0 s must be a finite time"):
        set_read_conditions(model, time_sec=-1.0)
    with pytest.raises(ValueError, match="conditions must be a ReadConditions"):
        set_read_conditions(model, {"time_sec": 1.0})  # type: ignore[arg-type]


def test_reseed_repeats_and_changes_the_read_noise() -> None:
    torch.manual_seed(10)
    model = convert_to_analog(mlp(), noisy_chip())
    x = torch.randn(8, 20)
    reseed_analog(model, 5)  # before programming: applied to the first programmed matrices
    with torch.no_grad():
        a = model(x)
        reseed_analog(model, 5)
        b = model(x)
        c = model(x)
        reseed_analog(model, 6)
        d = model(x)
    assert torch.equal(a, b)
    assert not torch.equal(b, c) and not torch.equal(b, d)
    assert programming_count(model) == 3


# ---------------------------------------------------------------------------------------- dtypes, devices
def test_float32_stays_float32_and_float64_stays_float64() -> None:
    for dtype in (torch.float32, torch.float64):
        layer = AnalogLinear(20, 4, chip=noisy_chip(), dtype=dtype)
        x = torch.randn(3, 20, dtype=dtype, requires_grad=True)
        y = layer(x)
        y.sum().backward()
        assert y.dtype == dtype and x.grad is not None and x.grad.dtype == dtype and layer.weight.grad.dtype == dtype


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
def test_cuda_tensors_run_on_the_chip_and_come_back(dtype: torch.dtype) -> None:
    """CUDA inputs are copied to the host for the chip and back; gradients stay on the device."""
    torch.manual_seed(11)
    cpu_model = convert_to_analog(cnn(dtype), noisy_chip(seed=2))
    gpu_model = convert_to_analog(cnn(dtype), noisy_chip(seed=2))
    gpu_model.load_state_dict(cpu_model.state_dict())
    program_analog(gpu_model)  # on the CPU weights; moving them to the device is no weight change
    gpu_model.cuda()
    x = torch.randn(4, 2, 8, 8, dtype=dtype)
    xc = x.clone().requires_grad_(True)
    y_cpu = cpu_model(xc)
    xg = x.cuda().requires_grad_(True)
    y_gpu = gpu_model(xg)
    assert y_gpu.device.type == "cuda" and y_gpu.dtype == dtype
    tol = 1e-4 if dtype == torch.float32 else 1e-10
    torch.testing.assert_close(y_gpu.cpu(), y_cpu.detach(), rtol=tol, atol=tol)  # same chip, same draws
    y_cpu.sum().backward()
    y_gpu.sum().backward()
    assert xg.grad is not None and xg.grad.device.type == "cuda"
    torch.testing.assert_close(xg.grad.cpu(), xc.grad, rtol=tol, atol=tol)
    for layer_cpu, layer_gpu in zip(cpu_model, gpu_model):
        if isinstance(layer_gpu, (AnalogLinear, AnalogConv2d)):
            assert layer_gpu.weight.grad.device.type == "cuda"
            torch.testing.assert_close(layer_gpu.weight.grad.cpu(), layer_cpu.weight.grad, rtol=tol, atol=tol)
    gpu_model.eval()
    with torch.no_grad():
        assert gpu_model(xg).device.type == "cuda"
    assert programming_count(gpu_model) == 3  # neither moving the model nor inference re-programs


def test_import_crossbar_does_not_import_torch() -> None:
    code = "import sys, crossbar; sys.exit(1 if 'torch' in sys.modules else 0)"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


# ---------------------------------------------------------------------------------------- bad input
def _layer() -> AnalogLinear:
    return AnalogLinear(20, 4, chip=noisy_chip())


@pytest.mark.parametrize(
    "make_input, match",
    [
        (lambda: torch.randn(3, 19), r"input has shape \(3, 19\); expected \(\*, 20\)"),
        (lambda: torch.full((2, 20), float("nan")), r"input contains a non-finite value \(nan\) at index \(0, 0\)"),
        (lambda: torch.ones(2, 20).index_fill(1, torch.tensor([7]), float("inf")), r"non-finite value \(inf\) at index \(0, 7\)"),
        (lambda: torch.randn(2, 20, dtype=F64), "input dtype torch.float64 does not match weight dtype torch.float32"),
        (lambda: torch.ones(2, 20, dtype=torch.int64), "dtype torch.int64; the chip runs float32 or float64"),
        (lambda: torch.ones(2, 20, dtype=torch.float16), "dtype torch.float16"),
        (lambda: torch.ones(2, 3, 20).index_fill(1, torch.tensor([2]), float("nan")), r"non-finite value \(nan\) at index \(0, 2, 0\)"),
    ],
    ids=["shape", "nan", "inf", "dtype-mismatch", "int", "half", "nan-3d"],
)
def test_bad_inputs_give_clear_value_errors(make_input, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        _layer()(make_input())


def test_bad_weights_and_conv_shapes_give_clear_value_errors() -> None:
    layer = _layer()
    with torch.no_grad():
        layer.weight[1, 2] = float("nan")
    with pytest.raises(ValueError, match=r"AnalogLinear: cannot program the weights: weights contains a non-finite value"):
        layer(torch.randn(2, 20))
    conv = AnalogConv2d(3, 4, 3, chip=noisy_chip())
    with pytest.raises(ValueError, match=r"expected \(N, 3, H, W\) or \(3, H, W\)"):
        conv(torch.randn(2, 4, 8, 8))
    with pytest.raises(ValueError, match="smaller than the kernel"):
        conv(torch.randn(2, 3, 2, 8))
    with pytest.raises(ValueError, match=r"analog_conv2d: input contains a non-finite value \(nan\) at index \(1, 2, 3, 4\)"):
        conv(torch.zeros(2, 3, 8, 8).index_put_((torch.tensor(1), torch.tensor(2), torch.tensor(3), torch.tensor(4)), torch.tensor(float("nan"))))
    with pytest.raises(ValueError, match="bias dtype torch.float32 does not match input dtype torch.float64"):
        analog_linear(torch.ones(2, 20, dtype=F64), torch.ones(4, 20, dtype=F64), torch.ones(4), matrix=ideal_chip().program(np.ones((4, 20))))
    m = ideal_chip().program(np.ones((4, 19)))
    with pytest.raises(ValueError, match=r"programmed matrix is 4 x 19 but the weight is 4 x 20"):
        analog_linear(torch.ones(2, 20, dtype=F64), torch.ones(4, 20, dtype=F64), matrix=m)
    with pytest.raises(ValueError, match="padding='same' needs stride 1"):
        analog_conv2d(torch.ones(1, 1, 4, 4, dtype=F64), torch.ones(1, 1, 2, 2, dtype=F64), stride=2, padding="same",
                      matrix=ideal_chip().program(np.ones((1, 4))))


@pytest.mark.parametrize(
    "build, match",
    [
        (lambda: AnalogLinear(4, 2, chip="pcm"), "chip must be a crossbar.Chip"),
        (lambda: AnalogLinear(0, 2), "in_features = 0 must be a positive integer"),
        (lambda: AnalogConv2d(4, 4, 3, groups=2), "groups = 2"),
        (
            lambda: AnalogLinear(4, 2, chip=Chip("pcm", ChipConfig(activation=ActivationConfig(function=Activation.SIGMOID)))),
            "activation must be 'identity'",
        ),
        (lambda: ReadConditions(time_sec=-1.0), "time_sec = -1.0 s must be a finite time"),
        (lambda: ReadConditions(temperature_kelvin=0.0), r"temperature_kelvin = 0.0 K must be in \(0, 1000\] K"),
        (lambda: ReadConditions(drift_compensation=1), "drift_compensation = 1 must be True, False or None"),
        (lambda: AnalogLinear(4, 2, read_conditions={"time_sec": 1.0}), "read_conditions must be a ReadConditions"),
        (lambda: _layer().reseed(-1), "seed = -1 must be a non-negative integer"),
    ],
    ids=["chip", "features", "groups", "chip-activation", "time", "temperature", "compensation", "conditions", "seed"],
)
def test_bad_construction_gives_clear_value_errors(build, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        build()


def test_repr_names_the_chip_and_the_read_conditions() -> None:
    layer = AnalogLinear(4, 2, chip=noisy_chip(seed=3), read_conditions=ReadConditions(time_sec=60.0))
    assert repr(layer) == "AnalogLinear(in_features=4, out_features=2, bias=True, profile='pcm', seed=3, time_sec=60)"
