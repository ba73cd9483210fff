"""The vectorizable elementary functions against the C library: ulp error bounds, special values."""

from __future__ import annotations

import math

import numba
import numpy as np
import pytest

from crossbar import _vmath


@numba.njit(error_model="numpy")
def _exp64(x: np.ndarray, out: np.ndarray) -> None:
    for i in range(x.shape[0]):
        out[i] = _vmath.exp_f64(x[i])


@numba.njit(error_model="numpy")
def _exp32(x: np.ndarray, out: np.ndarray) -> None:
    for i in range(x.shape[0]):
        out[i] = _vmath.exp_f32(x[i])


@numba.njit(error_model="numpy")
def _log32(x: np.ndarray, out: np.ndarray) -> None:
    for i in range(x.shape[0]):
        out[i] = _vmath.log_f32(x[i])


@numba.njit(error_model="numpy")
def _sincos32(t: np.ndarray, s: np.ndarray, c: np.ndarray) -> None:
    for i in range(t.shape[0]):
        s[i], c[i] = _vmath.sincos_quarter_f32(t[i])


@numba.njit(error_model="numpy")
def _abs_max(x: np.ndarray) -> float:
    m = 0
    for i in range(x.shape[0]):
        m = max(m, _vmath.abs_bits(x[i]))
    return _vmath.float_from_abs_bits(m, x[0])


def _ulps(got: np.ndarray, want: np.ndarray, dtype: type) -> np.ndarray:
    """|got - want| in units of the spacing of ``dtype`` at ``want`` (subnormal spacing near 0)."""
    spacing = np.spacing(np.abs(want).astype(dtype)).astype(np.float64)
    return np.where(got == want, 0.0, np.abs(got.astype(np.float64) - want) / spacing)


def test_exp_f64_is_within_one_ulp_of_math_exp_over_the_whole_range() -> None:
    rng = np.random.default_rng(0)
    x = np.concatenate(
        [
            rng.uniform(-745.2, 709.78, 300_000),  # everything, subnormal results included
            rng.uniform(-746.0, -708.0, 50_000),  # the subnormal range
            rng.uniform(-1.0, 1.0, 50_000),
            [0.0, -0.0, 1e-300, -1e-300, 1e-17, 709.782712893384, -745.13, -745.14, -708.39641853226408],
        ]
    )
    got = np.empty_like(x)
    _exp64(x, got)
    want = np.array([math.exp(v) for v in x])
    assert _ulps(got, want, np.float64).max() <= 1.0


@pytest.mark.parametrize(
    "x, want",
    [(np.inf, np.inf), (-np.inf, 0.0), (710.0, np.inf), (-746.0, 0.0), (-1e308, 0.0), (1e308, np.inf), (0.0, 1.0)],
    ids=["inf", "-inf", "overflow", "underflow", "-huge", "huge", "zero"],
)
def test_exp_f64_special_values(x: float, want: float) -> None:
    got = np.empty(1)
    _exp64(np.array([x]), got)
    assert got[0] == want


def test_exp_propagates_nan() -> None:
    g64, g32 = np.empty(1), np.empty(1, np.float32)
    _exp64(np.array([np.nan]), g64)
    _exp32(np.array([np.nan], np.float32), g32)
    assert np.isnan(g64[0]) and np.isnan(g32[0])


def test_exp_f32_is_within_two_ulps_over_its_range() -> None:
    rng = np.random.default_rng(1)
    x = np.concatenate([rng.uniform(-104.0, 88.72, 300_000), rng.uniform(-1, 1, 50_000), [0.0, 88.72283172607422, -87.33654, -103.9]])
    x = x.astype(np.float32)
    got = np.empty_like(x)
    _exp32(x, got)
    want = np.exp(x.astype(np.float64))
    assert _ulps(got, want, np.float32).max() <= 2.0
    edge = np.empty(3, np.float32)
    _exp32(np.array([88.7229, -110.0, np.inf], np.float32), edge)
    assert edge[0] == np.inf and edge[1] == 0.0 and edge[2] == np.inf


def test_log_f32_is_within_two_ulps_on_the_generator_range() -> None:
    """The generator takes logs of u in [2^-32, 1]."""
    rng = np.random.default_rng(2)
    u = np.concatenate(
        [rng.uniform(0, 1, 300_000), np.exp(rng.uniform(-22.2, 0, 200_000)), 1 - rng.uniform(0, 1e-6, 10_000), [1.0, 0.5, 2.0**-32, 0.70710677]]
    ).astype(np.float32)
    u = u[u > 0]
    got = np.empty_like(u)
    _log32(u, got)
    want = np.log(u.astype(np.float64))
    assert _ulps(got, want, np.float32).max() <= 2.0
    assert got[u == 1.0][0] == 0.0


def test_sincos_on_the_quarter_range() -> None:
    t = np.linspace(-math.pi / 4, math.pi / 4, 200_001).astype(np.float32)
    s, c = np.empty_like(t), np.empty_like(t)
    _sincos32(t, s, c)
    t64 = t.astype(np.float64)
    assert np.abs(s - np.sin(t64)).max() < 1.5e-7
    assert np.abs(c - np.cos(t64)).max() < 1.5e-7


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
def test_abs_bits_orders_like_the_absolute_value(dtype: type) -> None:
    rng = np.random.default_rng(3)
    for _ in range(20):
        x = (rng.standard_normal(37) * 10.0 ** rng.integers(-30, 30)).astype(dtype)
        assert _abs_max(x) == np.abs(x).max()
    assert _abs_max(np.array([-0.0, 0.0], dtype)) == 0.0
    assert _abs_max(np.array([1.0, -np.inf], dtype)) == np.inf
