"""The differentiable surrogate: against a slow loop reference, gradients, and against the chip it was fitted to."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy import stats
from torch import nn

from crossbar import ADCConfig, Chip, ChipConfig, DACConfig, InputRange, ReadNoiseSampling, ScaleMode, Stages, TileConfig, load_profile
from crossbar.characterization import CharacterizationProtocol, characterize, normalized_errors, probe_matrix
from crossbar.characterization_io import read_characterization, write_characterization
from crossbar.fitting import SurrogateParams, binned_std
from crossbar.nn import surrogate as surrogate_module
from crossbar.nn import (
    AnalogLinear,
    StaticNoise,
    SurrogateLinear,
    SurrogateNoise,
    convert_to_analog,
    convert_to_surrogate,
    strip_surrogate,
    surrogate_layers,
    surrogate_linear,
    surrogate_outputs,
    update_surrogate_params,
)

@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread():
    """Many tiny matmuls: on a loaded shared machine waking BLAS threads costs more than the work."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


NOISY = SurrogateParams(
    tile_rows=8,
    tile_cols=4,
    dac_bits=None,
    adc_bits=None,
    adc_full_scale_rel=math.inf,
    gain_rel=0.9,
    static_var_c0_rel=1e-3,
    static_var_c1_rel=4e-3,
    static_var_c2_rel=-1e-3,
    read_noise_alpha_rel=2e-3,
    read_noise_offset_rel=3e-4,
    output_noise_std_rel=0.05,
    beta_rel=0.01,
    activation_correlated_std_rel=0.02,
    activation_uncorrelated_std_rel=0.03,
)
"""Every noise term on, three tile rows for 20 inputs (the last one partial), no quantization."""


def reference(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None, p: SurrogateParams, z: SurrogateNoise,
              sampling: ReadNoiseSampling, *, std_gradient: bool = True) -> torch.Tensor:
    """Slow, obvious surrogate: loops over vectors, outputs and tile rows, one formula per line
    (crossbar.nn.surrogate docstring). Rounding is straight-through: v + (round(v) - v).detach()."""

    def rnd(v: torch.Tensor) -> torch.Tensor:
        return v + (torch.round(v) - v).detach()

    def std(v: torch.Tensor) -> torch.Tensor:
        s = torch.sqrt(torch.clamp(v, min=1e-300))
        return s if std_gradient else s.detach()

    n_b, n_in = x.shape
    n_out = w.shape[0]
    rows, cols = p.tile_rows, p.tile_cols
    n_tiles = -(-n_in // rows)
    out = []
    for bb in range(n_b):
        if p.input_range is InputRange.PER_SAMPLE_ABSMAX:
            peak = x[bb].abs().max()
            s_x = peak if peak > 0 else torch.ones((), dtype=x.dtype)
            xn = x[bb] / s_x
        else:
            s_x = torch.tensor(p.input_max, dtype=x.dtype)
            xn = x[bb] / s_x
            if p.clip_inputs:
                xn = xn.clamp(-1, 1)
        if p.dac_bits is not None:
            n = 2 ** (p.dac_bits - 1) - 1
            xn = rnd(xn * n) / n
        row = []
        for i in range(n_out):
            acc = torch.zeros((), dtype=x.dtype)
            for k in range(n_tiles):
                rs = slice(k * rows, min((k + 1) * rows, n_in))
                if p.scale_mode is ScaleMode.PER_TILE:
                    c = i // cols
                    s_w = w[c * cols : (c + 1) * cols, rs].abs().max()
                else:
                    s_w = w[i, rs].abs().max()
                s_w = s_w if s_w > 0 else torch.ones((), dtype=x.dtype)
                wt = w[i, rs] / s_w
                var_static = p.static_var_c0_rel + p.static_var_c1_rel * wt.abs() + p.static_var_c2_rel * wt**2
                var_read = p.read_noise_alpha_rel * wt.abs() + p.read_noise_offset_rel
                weff = p.gain_rel * wt + std(var_static) * z.static[i, rs]
                if sampling is ReadNoiseSampling.PER_BATCH:
                    weff = weff + std(var_read) * z.read_weight[i, rs]
                current = torch.sum(weff * xn[rs])
                var = p.output_noise_std_rel**2 + p.beta_rel * current.abs()
                if sampling is ReadNoiseSampling.PER_SAMPLE:
                    var = var + torch.sum(var_read * xn[rs] ** 2)
                current = current + std(var) * z.read_output[k, bb, i]
                if math.isfinite(p.adc_full_scale_rel):
                    current = current.clamp(-p.adc_full_scale_rel, p.adc_full_scale_rel)
                if p.adc_bits is not None:
                    step = p.adc_full_scale_rel / (2 ** (p.adc_bits - 1) - 1)
                    current = rnd(current / step) * step
                acc = acc + s_w * current
            y = s_x * acc
            if b is not None:
                y = y + b[i]
            y = y + p.activation_correlated_std_rel * z.correlated[bb] + p.activation_uncorrelated_std_rel * z.uncorrelated[bb, i]
            row.append(y)
        out.append(torch.stack(row))
    return torch.stack(out)


def _data(seed: int = 0, n_b: int = 5, n_out: int = 6, n_in: int = 20, dtype: torch.dtype = torch.float64):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n_b, n_in, generator=g, dtype=dtype)
    w = torch.randn(n_out, n_in, generator=g, dtype=dtype)
    b = torch.randn(n_out, generator=g, dtype=dtype)
    return x, w, b, g


CASES = {
    "all-noise": NOISY,
    "converters": NOISY.replace(dac_bits=6, adc_bits=7, adc_full_scale_rel=3.0),
    "per-tile-fixed-range": NOISY.replace(scale_mode=ScaleMode.PER_TILE, input_range=InputRange.FIXED, input_max=1.5,
                                          adc_full_scale_rel=2.5),
    "one-tile": NOISY.replace(tile_rows=64, tile_cols=64, adc_bits=8, adc_full_scale_rel=12.0, dac_bits=8),
    "clipping": NOISY.replace(dac_bits=6, adc_bits=5, adc_full_scale_rel=0.8),  # 20-40 % of the partials clip
    "ideal": SurrogateParams(tile_rows=8, tile_cols=4),
}


@pytest.fixture(params=[True, False], ids=["cpu-kernels", "torch-ops"])
def backend(request, monkeypatch) -> bool:
    """The element-wise stages on the CPU: the numba kernels (default) or the torch ops every other device runs."""
    monkeypatch.setattr(surrogate_module, "_CPU_KERNELS", request.param)
    return request.param


@pytest.mark.parametrize("sampling", list(ReadNoiseSampling), ids=lambda s: s.value)
@pytest.mark.parametrize("name", list(CASES), ids=list(CASES))
def test_forward_matches_the_loop_reference(name: str, sampling: ReadNoiseSampling, backend: bool) -> None:
    """Both backends, with gradients wanted (out-of-place, autograd Functions) and without (in place, fused)."""
    p = CASES[name]
    x, w, b, g = _data()
    z = SurrogateNoise.draw(5, 6, 20, p, generator=g)
    want = reference(x, w, b, p, z, sampling)
    with torch.no_grad():
        torch.testing.assert_close(surrogate_linear(x, w, b, params=p, noise=z, read_noise_sampling=sampling), want,
                                   rtol=1e-10, atol=1e-10)
    got = surrogate_linear(x, w.clone().requires_grad_(True), b, params=p, noise=z, read_noise_sampling=sampling)
    torch.testing.assert_close(got.detach(), want, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("sampling", list(ReadNoiseSampling), ids=lambda s: s.value)
def test_gradcheck_with_frozen_noise(sampling: ReadNoiseSampling, backend: bool) -> None:
    """Ideal converters: the surrogate is smooth almost everywhere, its gradient exact (float64)."""
    p = NOISY.replace(adc_full_scale_rel=50.0)
    x, w, b, g = _data(1, n_b=3, n_out=4, n_in=11)
    z = SurrogateNoise.draw(3, 4, 11, p, generator=g)
    args = tuple(t.clone().requires_grad_(True) for t in (x, w, b))
    assert torch.autograd.gradcheck(
        lambda xx, ww, bb: surrogate_linear(xx, ww, bb, params=p, noise=z, read_noise_sampling=sampling), args, eps=1e-6, atol=1e-7
    )


@pytest.mark.parametrize("sampling", list(ReadNoiseSampling), ids=lambda s: s.value)
def test_gradcheck_with_fresh_seeded_noise(sampling: ReadNoiseSampling, backend: bool) -> None:
    """The paths that draw their own noise (one summed draw for static and read noise, buffers reused)
    have the exact gradient too: with the generator reseeded at every call the surrogate is a fixed function."""
    p = NOISY.replace(adc_full_scale_rel=50.0, beta_rel=0.0 if sampling is ReadNoiseSampling.PER_BATCH else 0.01)
    x, w, b, _ = _data(7, n_b=3, n_out=4, n_in=11)
    args = tuple(t.clone().requires_grad_(True) for t in (x, w, b))

    def f(xx: torch.Tensor, ww: torch.Tensor, bb: torch.Tensor) -> torch.Tensor:
        return surrogate_linear(xx, ww, bb, params=p, generator=torch.Generator().manual_seed(5), read_noise_sampling=sampling)

    assert not torch.equal(f(*args), f(x, w * 1.01, b))  # the noise does depend on the weights (its std)
    assert torch.autograd.gradcheck(f, args, eps=1e-6, atol=1e-7)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["float64", "float32"])
@pytest.mark.parametrize("sampling", list(ReadNoiseSampling), ids=lambda s: s.value)
@pytest.mark.parametrize("name", ["all-noise", "converters", "per-tile-fixed-range"], ids=str)
def test_backends_and_gradient_modes_agree_with_fresh_noise(name: str, sampling: ReadNoiseSampling, dtype: torch.dtype,
                                                            monkeypatch) -> None:
    """Same seed, same numbers: the CPU kernels and the torch ops (the code other devices run), each with
    and without gradients wanted, give the same outputs and the same weight gradient."""
    p = CASES[name].replace(beta_rel=0.0) if sampling is ReadNoiseSampling.PER_BATCH else CASES[name]
    x, w, b, _ = _data(8, n_b=7, dtype=dtype)
    results = []
    for kernels in (True, False):
        monkeypatch.setattr(surrogate_module, "_CPU_KERNELS", kernels)
        with torch.no_grad():
            y0 = surrogate_linear(x, w, b, params=p, generator=torch.Generator().manual_seed(3), read_noise_sampling=sampling)
        ww = w.clone().requires_grad_(True)
        y1 = surrogate_linear(x, ww, b, params=p, generator=torch.Generator().manual_seed(3), read_noise_sampling=sampling)
        (y1 * torch.linspace(-1, 1, 6, dtype=dtype)).sum().backward()
        results.append((y0, y1.detach(), ww.grad))
    tol = {"rtol": 1e-12, "atol": 1e-12} if dtype == torch.float64 else {"rtol": 2e-5, "atol": 2e-5}
    want_y, _, want_g = results[1]
    for y0, y1, grad in results:
        torch.testing.assert_close(y0, want_y, **tol)
        torch.testing.assert_close(y1, want_y, **tol)
        torch.testing.assert_close(grad, want_g, **tol)


@pytest.mark.parametrize(
    ("c0", "c1", "c2"), [(1e-3, 4e-3, -1e-3), (1e-3, 0.0, -3e-3)], ids=["static-variance-positive", "static-variance-clamped"]
)
def test_static_and_read_weight_noise_per_forward_have_the_model_variance(c0: float, c1: float, c2: float, backend: bool) -> None:
    """A fresh static draw and per-batch read noise at every forward (one summed draw when that is the same
    distribution): per device, Var(w~_eff) = max(c0 + c1 a + c2 a^2, 0) + alpha a + alpha0 and E = g w~, a = |w~|.
    Read through one-hot inputs (ideal converters, no output noise): y[j, i] = s_w,i w~_eff,ij. In the
    second case the static polynomial is negative for a > 0.58; summing it with the read variance before
    clamping would halve the variance there."""
    p = SurrogateParams(tile_rows=16, gain_rel=0.9, static_var_c0_rel=c0, static_var_c1_rel=c1, static_var_c2_rel=c2,
                        read_noise_alpha_rel=2e-3, read_noise_offset_rel=5e-4)
    _, w, _, _ = _data(9, n_out=8, n_in=16)
    g = torch.Generator().manual_seed(1)
    s_w = w.abs().amax(1, keepdim=True)
    a = (w / s_w).abs()
    n = 3000
    with torch.no_grad():
        w_eff = torch.stack([surrogate_linear(torch.eye(16, dtype=w.dtype), w, params=p, generator=g).t() / s_w for _ in range(n)])
    var = torch.clamp(c0 + c1 * a + c2 * a**2, min=0) + 2e-3 * a + 5e-4
    z_var = (w_eff.var(0) / var - 1) / math.sqrt(2 / n)
    assert z_var.abs().max() < 5, z_var
    assert abs(z_var.mean()) < 4 / math.sqrt(z_var.numel())
    z_mean = (w_eff.mean(0) - 0.9 * w / s_w) / (var / n).sqrt()
    assert z_mean.abs().max() < 5


@pytest.mark.parametrize("weight_noise", [False, True], ids=["scales-alone", "scales-in-the-noise-pass"])
def test_row_scale_gradient_is_shared_by_ties_as_amax(weight_noise: bool, backend: bool) -> None:
    """Ties of a row's max |w| (and of a vector's max |x|) share its gradient as under torch.max (with their
    sign); a row of zeros gets the constant scale 1, which passes no gradient. Against the loop reference,
    with the noise draws set to 0 (with weight noise the scales are formed in the noisy-weight pass)."""
    w = torch.tensor([[1.0, -1.0, 0.5, 0.25], [0.0, 0.0, 0.0, 0.0], [0.2, -0.7, 0.7, 0.1]], dtype=torch.float64)
    x = torch.tensor([[0.3, -1.0, 1.0, 0.2], [1.0, 0.5, -0.25, 0.0]], dtype=torch.float64)
    p = SurrogateParams(tile_rows=4, adc_bits=6, adc_full_scale_rel=4.0, static_var_c0_rel=1e-3 if weight_noise else 0.0,
                        static_var_c1_rel=2e-3 if weight_noise else 0.0)
    z = SurrogateNoise(static=torch.zeros(3, 4, dtype=torch.float64), read_weight=torch.zeros(3, 4, dtype=torch.float64),
                       read_output=torch.zeros(1, 2, 3, dtype=torch.float64), correlated=torch.zeros(2, dtype=torch.float64),
                       uncorrelated=torch.zeros(2, 3, dtype=torch.float64))
    args = [[t.clone().requires_grad_(True) for t in (x, w)] for _ in range(2)]
    (surrogate_linear(*args[0], params=p, noise=z) * torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)).sum().backward()
    (reference(*args[1], None, p, z, ReadNoiseSampling.PER_BATCH) * torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)).sum().backward()
    for got, want in zip(args[0], args[1]):
        torch.testing.assert_close(got.grad, want.grad, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("std_gradient", [True, False], ids=["exact", "std-held"])
def test_straight_through_gradients_match_the_reference(std_gradient: bool, backend: bool) -> None:
    """With the quantizers on, the gradient is that of the declared straight-through surrogate."""
    p = CASES["converters"]
    x, w, b, g = _data(2)
    z = SurrogateNoise.draw(5, 6, 20, p, generator=g)
    grads = []
    for fn in (
        lambda xx, ww, bb: surrogate_linear(xx, ww, bb, params=p, noise=z, noise_std_gradient=std_gradient),
        lambda xx, ww, bb: reference(xx, ww, bb, p, z, ReadNoiseSampling.PER_BATCH, std_gradient=std_gradient),
    ):
        args = [t.clone().requires_grad_(True) for t in (x, w, b)]
        (fn(*args) * torch.linspace(-1, 1, 6, dtype=torch.float64)).sum().backward()
        grads.append([a.grad for a in args])
    for got, want in zip(*grads):
        torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-9)


def test_ideal_params_give_the_exact_linear_map() -> None:
    x, w, b, _ = _data(3, dtype=torch.float32)
    y = surrogate_linear(x, w, b, params=SurrogateParams(tile_rows=7))
    torch.testing.assert_close(y, nn.functional.linear(x, w, b), rtol=1e-5, atol=1e-5)


def test_output_variance_is_the_model_variance() -> None:
    """Per output: Var = (s_x s_w)^2 (sigma_out^2 + sum (alpha |w~| + alpha0) x~^2) + s_u^2 + s_c^2, one tile."""
    p = SurrogateParams(tile_rows=32, read_noise_alpha_rel=4e-3, read_noise_offset_rel=1e-3, output_noise_std_rel=0.05,
                        activation_uncorrelated_std_rel=0.1, activation_correlated_std_rel=0.05)
    x, w, _, g = _data(4, n_b=2, n_out=3, n_in=32)
    s_x = x.abs().amax(1, keepdim=True)
    s_w = w.abs().amax(1)
    wt = (w / s_w[:, None]).abs()
    xn2 = (x / s_x) ** 2
    expected = (s_x * s_w) ** 2 * (0.05**2 + xn2 @ (4e-3 * wt + 1e-3).t()) + 0.1**2 + 0.05**2
    n = 20000
    # PER_SAMPLE: every vector of one call has its own draw; PER_BATCH: one weight draw per call, so many calls
    y_sample = surrogate_linear(x.repeat(n, 1), w, params=p, generator=g, read_noise_sampling=ReadNoiseSampling.PER_SAMPLE)
    y_batch = torch.stack([surrogate_linear(x, w, params=p, generator=g) for _ in range(n // 10)])
    for y, m, rtol in ((y_sample.reshape(n, 2, 3), n, 0.05), (y_batch, n // 10, 0.15)):  # 5 and 4.7 standard errors
        torch.testing.assert_close(y.var(0), expected, rtol=rtol, atol=0)
        assert torch.all((y.mean(0) - x @ w.t()).abs() < 4 * (expected / m).sqrt())


# --------------------------------------------------------------------------------------------------
# Against the chip
# --------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pcm_characterization():
    """PCM with every default stage (8-bit converters, programming and read noise incl. 1/f, output noise)
    on 64 x 64 tiles; a 96 x 128 layer spans 2 x 2 tiles."""
    cfg = ChipConfig(tile=TileConfig(rows=64, cols=64))
    chip = Chip("pcm", cfg, seed=0)
    w = probe_matrix("gaussian", (96, 128), seed=5)
    char = characterize(chip, {"w": w}, protocol=CharacterizationProtocol(n_inputs=2048, times_sec=(), temperatures_kelvin=()))
    return cfg, w, char


@pytest.mark.parametrize("sampling", list(ReadNoiseSampling), ids=lambda s: s.value)
def test_surrogate_and_chip_error_distributions_agree(pcm_characterization, sampling: ReadNoiseSampling) -> None:
    """Errors of a freshly programmed chip and of the surrogate on new inputs, in normalized units:
    std per |W x| bin (10 equal-count bins) within 10 %, and a two-sample Kolmogorov-Smirnov test on
    2000 errors of each that does not reject at the 1 % level."""
    cfg, w, char = pcm_characterization
    p = char.surrogate_params
    x = np.random.default_rng(11).standard_normal((1500, 128))
    y_chip = Chip("pcm", cfg, seed=1).program(w).matvec(x)[None]
    layer = SurrogateLinear(128, 96, bias=False, params=p, seed=3, read_noise_sampling=sampling, static_noise=StaticNoise.FROZEN,
                            dtype=torch.float64)
    with torch.no_grad():
        layer.weight.copy_(torch.from_numpy(w))
        y_sur = np.concatenate([layer(torch.from_numpy(x[k : k + 100])).numpy() for k in range(0, 1500, 100)])[None]
    a_c, e_c = normalized_errors(w, x, y_chip, p)
    a_s, e_s = normalized_errors(w, x, y_sur, p)
    edges = np.quantile(a_c, np.linspace(0, 1, 11))
    edges[0], edges[-1] = 0.0, np.inf
    n_c, _, std_c = binned_std(a_c, e_c, edges)
    n_s, _, std_s = binned_std(a_s, e_s, edges)
    assert np.all(n_c > 10_000) and np.all(n_s > 10_000)
    np.testing.assert_allclose(std_s, std_c, rtol=0.10)
    rng = np.random.default_rng(0)
    ks = stats.ks_2samp(rng.choice(e_c.ravel(), 2000, replace=False), rng.choice(e_s.ravel(), 2000, replace=False))
    assert ks.pvalue > 0.01, ks


def test_characterization_file_builds_the_same_surrogate(pcm_characterization, tmp_path: Path) -> None:
    _, w, char = pcm_characterization
    back = read_characterization(write_characterization(tmp_path / "pcm.h5", char))
    x = np.random.default_rng(0).standard_normal((8, 128))
    np.testing.assert_array_equal(surrogate_outputs(back.surrogate_params, w, x, seed=1),
                                  surrogate_outputs(char.surrogate_params, w, x, seed=1))
    m = back.matrix("w")  # raw samples replay: the surrogate's error on the stored inputs has the chip's spread
    y_sur = surrogate_outputs(back.surrogate_params, m.weights, m.raw_inputs, n_repeats=2, seed=2)
    _, e_chip = normalized_errors(m.weights, m.raw_inputs, m.raw_outputs, back.surrogate_params)
    _, e_sur = normalized_errors(m.weights, m.raw_inputs, y_sur, back.surrogate_params)
    assert np.std(e_sur) == pytest.approx(np.std(e_chip), rel=0.1)


class _SurrogateChip:
    """A black box with the chip's interface whose matrices are the surrogate itself (known parameters)."""

    def __init__(self, params: SurrogateParams, config: ChipConfig, seed: int) -> None:
        self.params, self.config, self.seed = params, config, seed
        self.profile = load_profile("ideal")
        self._gen = torch.Generator().manual_seed(seed)

    def program(self, weights: np.ndarray) -> _SurrogateMatrix:
        return _SurrogateMatrix(self, np.asarray(weights, dtype=np.float64))


class _SurrogateMatrix:
    def __init__(self, chip: _SurrogateChip, weights: np.ndarray) -> None:
        self.chip, self.weights, self.bias = chip, weights, None
        self._w = torch.from_numpy(weights)
        self._z = torch.randn(weights.shape, generator=chip._gen, dtype=torch.float64)  # one programming

    def matvec(self, x: np.ndarray, *, time_sec: float | None = None, temperature_kelvin: float | None = None) -> np.ndarray:
        with torch.no_grad():
            return surrogate_linear(torch.from_numpy(x), self._w, params=self.chip.params, generator=self.chip._gen,
                                    noise=SurrogateNoise(static=self._z), read_noise_sampling=ReadNoiseSampling.PER_SAMPLE).numpy()


def test_characterizing_the_surrogate_recovers_its_parameters() -> None:
    """Round trip params -> surrogate -> characterize -> params, including the data-dependent beta that the
    simulated chip does not have (within 4 standard errors; see tests/crossbar/test_characterization.py)."""
    cfg = ChipConfig(tile=TileConfig(rows=64, cols=32), dac=DACConfig(bits=8), adc=ADCConfig(bits=None), stages=Stages.only("dac"))
    truth = SurrogateParams.design(cfg).replace(
        gain_rel=0.95, static_var_c0_rel=2e-4, read_noise_alpha_rel=3e-4, read_noise_offset_rel=5e-5,
        output_noise_std_rel=0.04, beta_rel=2e-3, activation_correlated_std_rel=0.2, activation_uncorrelated_std_rel=0.1,
    )
    char = characterize(_SurrogateChip(truth, cfg, seed=0),
                        protocol=CharacterizationProtocol(n_inputs=2048, times_sec=(), temperatures_kelvin=(), seed=1))
    rn = char.read_noise
    # Standard errors relative to the value, over 16 seeds (chip and protocol): offset 0.11-0.23, alpha
    # 0.05-0.11, the others below 0.03. beta is the model's coefficient of the realized current g |I~|
    # (the estimator divides its fit on the exact |I~| by the gain; before it did, beta read about 5 %
    # low here, g = 0.95, z = -3.7).
    for name, value, rel_se in (("output_var_rel", 0.04**2, 0.1), ("alpha_rel", 3e-4, 0.2), ("offset_rel", 5e-5, 0.3),
                                ("beta_rel", 2e-3, 0.1), ("activation_var_rel", 0.2**2 + 0.1**2, 0.1)):
        se = rn.std_error(name)
        assert abs(rn[name] - value) <= 4 * se, (name, rn[name], value, se)
        assert se < rel_se * value, (name, se)
    assert abs(char.correlated_var_rel - 0.04) <= 4 * char.correlated_var_std_error
    p = char.surrogate_params
    assert p.gain_rel == pytest.approx(0.95, abs=0.01)
    assert p.static_std_rel(0.5) == pytest.approx(math.sqrt(2e-4), rel=0.1)


# --------------------------------------------------------------------------------------------------
# The layer and model helpers
# --------------------------------------------------------------------------------------------------


def _mlp() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(20, 16), nn.ReLU(), nn.Linear(16, 4))


def test_layer_is_an_nn_linear_sharing_parameters() -> None:
    lin = nn.Linear(20, 6)
    layer = SurrogateLinear.from_linear(lin, params=NOISY, seed=1)
    assert isinstance(layer, nn.Linear) and layer.weight is lin.weight and layer.bias is lin.bias
    assert set(layer.state_dict()) == {"weight", "bias"}
    x = torch.randn(7, 20)
    layer(x).sum().backward()
    assert lin.weight.grad is not None and torch.all(torch.isfinite(lin.weight.grad))
    assert "read_noise=per_batch" in repr(layer)


def test_layer_noise_repeats_with_the_seed_and_freezes_the_static_draw() -> None:
    x = torch.randn(4, 20)
    a = SurrogateLinear(20, 6, params=NOISY.replace(read_noise_alpha_rel=0, read_noise_offset_rel=0, output_noise_std_rel=0,
                                                     beta_rel=0, activation_correlated_std_rel=0, activation_uncorrelated_std_rel=0),
                        seed=3, static_noise=StaticNoise.FROZEN)
    y1, y2 = a(x), a(x)
    torch.testing.assert_close(y1, y2)  # only static noise, frozen: the same chip at every read
    a.resample_static()
    assert not torch.allclose(a(x), y1)
    b = SurrogateLinear(20, 6, params=NOISY, seed=5)
    b.load_state_dict(a.state_dict())
    c = SurrogateLinear(20, 6, params=NOISY, seed=5)
    c.load_state_dict(a.state_dict())
    torch.testing.assert_close(b(x), c(x))
    assert not torch.allclose(b(x), b(x))  # fresh noise at every forward


def test_update_params_in_place_changes_the_model_not_the_module() -> None:
    model = convert_to_surrogate(_mlp(), NOISY, seed=0)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    x = torch.randn(5, 20)
    layers = [m for _, m in surrogate_layers(model)]
    assert len(layers) == 2 and layers[0].seed != layers[1].seed
    assert update_surrogate_params(model, SurrogateParams(tile_rows=8)) == 2
    assert [m for _, m in surrogate_layers(model)] == layers and all(m.params == SurrogateParams(tile_rows=8) for m in layers)
    torch.testing.assert_close(model(x), strip_surrogate(model)(x))  # ideal params: the digital model
    assert update_surrogate_params(model, {"2": NOISY}) == 1
    assert layers[1].params is NOISY and layers[0].params == SurrogateParams(tile_rows=8)
    model(x).sum().backward()
    opt.step()  # the optimizer still holds the same parameters


def test_strip_and_convert_to_analog_share_the_trained_weights() -> None:
    model = convert_to_surrogate(_mlp(), NOISY)
    plain = strip_surrogate(model, inplace=False)
    assert not surrogate_layers(plain) and all(type(m) is nn.Linear for m in plain if isinstance(m, nn.Linear))
    analog = convert_to_analog(strip_surrogate(model, inplace=True), Chip("ideal", ChipConfig.ideal()), inplace=True)
    assert any(isinstance(m, AnalogLinear) for m in analog.modules())
    assert analog[0].weight is model[0].weight


def test_convert_with_per_layer_params_leaves_other_layers_digital() -> None:
    model = convert_to_surrogate(_mlp(), {"0": NOISY})
    assert isinstance(model[0], SurrogateLinear) and type(model[2]) is nn.Linear
    with pytest.raises(ValueError, match="params"):
        convert_to_surrogate(_mlp(), {"0": 3})  # type: ignore[dict-item]


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: surrogate_linear(torch.randn(2, 5), torch.randn(3, 4), params=NOISY), "expected"),
        (lambda: surrogate_linear(torch.randn(2, 4, dtype=torch.float64), torch.randn(3, 4), params=NOISY), "dtype"),
        (lambda: surrogate_linear(torch.randn(2, 4), torch.randn(3, 4), params="pcm"), "SurrogateParams"),  # type: ignore[arg-type]
        (lambda: surrogate_linear(torch.randn(2, 4), torch.randn(3, 4), params=NOISY, noise=SurrogateNoise(static=torch.randn(2, 2))),
         "noise.static"),
        (lambda: SurrogateLinear(4, 3, params=NOISY, seed=-1), "seed"),
    ],
    ids=["shape", "dtype", "params", "noise-shape", "seed"],
)
def test_bad_arguments_are_rejected(call, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        call()


def test_pi_hw_builds_the_physics_loss_prior(pcm_characterization) -> None:
    from training.physics_loss import HardwarePrior, PhysicsInformedLoss, physics_informed_penalty

    _, _, char = pcm_characterization
    pi = char.pi_hw.scaled(0.5)
    prior = HardwarePrior(bin_edges=tuple(pi.bin_edges), probabilities=tuple(pi.probabilities), source=pi.source)
    cfg = PhysicsInformedLoss(w_max=pi.w_max, bits=pi.bits)
    w = torch.randn(10, 10, requires_grad=True)
    physics_informed_penalty([w], config=cfg, prior=prior).backward()
    assert torch.isfinite(w.grad).all()


@pytest.mark.gpu
def test_cuda_matches_cpu_with_the_same_noise() -> None:
    p = CASES["converters"]
    x, w, b, g = _data(5)
    z = SurrogateNoise.draw(5, 6, 20, p, generator=g)
    cpu = surrogate_linear(x, w, b, params=p, noise=z)
    zc = SurrogateNoise(**{k: getattr(z, k).cuda() for k in ("static", "read_weight", "read_output", "correlated", "uncorrelated")})
    gpu = surrogate_linear(x.cuda(), w.cuda(), b.cuda(), params=p, noise=zc)
    torch.testing.assert_close(gpu.cpu(), cpu)
    layer = SurrogateLinear(20, 6, params=p).cuda()
    assert layer(x.float().cuda()).device.type == "cuda"


def test_plots_of_measured_and_surrogate_errors_and_of_drift(pcm_characterization, tmp_path: Path) -> None:
    from crossbar.plots import plot_drift, plot_error_distributions

    _, _, char = pcm_characterization
    m = char.matrix("w")
    p = char.surrogate_params
    measured = normalized_errors(m.weights, m.raw_inputs, m.raw_outputs, p)
    sur = normalized_errors(m.weights, m.raw_inputs, surrogate_outputs(p, m.weights, m.raw_inputs, n_repeats=2), p)
    out = plot_error_distributions(measured, tmp_path / "errors.png", surrogate=sur, title="pcm")
    assert out.stat().st_size > 10_000
    with pytest.raises(ValueError, match="time sweep"):
        plot_drift(char, tmp_path / "drift.png")  # this characterization has no sweep
    cfg = ChipConfig(tile=TileConfig(rows=16, cols=8))
    swept = characterize(Chip("pcm", cfg, seed=0), protocol=CharacterizationProtocol(n_inputs=64, n_sweep_inputs=32,
                         times_sec=(20.0, 2e3, 2e5), temperatures_kelvin=()))
    assert plot_drift(swept, tmp_path / "drift.png").stat().st_size > 10_000
