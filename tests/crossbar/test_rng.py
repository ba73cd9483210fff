"""The kernels' random streams: the generator against its slow reference, distributions, independent
streams, reproducible layout."""

from __future__ import annotations

import math

import numba
import numpy as np
import pytest
from scipy import stats

from crossbar import _rng
from tests.crossbar import reference


@numba.njit(error_model="numpy")
def _draw(out: np.ndarray, seed: np.uint64, stream: np.uint64) -> None:
    _rng.fill_normal(out, out.shape[0], _rng.normal_stream(seed, stream))


@numba.njit(error_model="numpy")
def _draw_twice(a: np.ndarray, b: np.ndarray, seed: np.uint64) -> None:
    st = _rng.normal_stream(seed, np.uint64(0))
    _rng.fill_normal(a, a.shape[0], st)
    _rng.fill_normal(b, b.shape[0], st)


def _stream_normals(seed: int, stream: int, n: int) -> np.ndarray:
    """The first ``n`` normals of stream ``stream`` of ``seed``, drawn by the kernel helpers."""
    out = np.empty(n, dtype=np.float32)
    _draw(out, np.uint64(seed), np.uint64(stream))
    return out.astype(np.float64)


def _reference_normals(seed: int, stream: int, n: int) -> np.ndarray:
    """The first ``n`` normals of one stream from the pure-Python reference."""
    n_blocks = -(-n // _rng.NORMALS_PER_BLOCK)
    words = reference.normal_stream_words(seed, stream, n_blocks, _rng.N_LANES, _rng.PAIRS_PER_BLOCK)
    p = _rng.PAIRS_PER_BLOCK
    blocks = [reference.box_muller_block(words[k * p : (k + 1) * p]) for k in range(n_blocks)]
    return np.concatenate(blocks)[:n]


@pytest.mark.parametrize("seed, stream", [(0, 0), (123, 5), (2**64 - 1, 2**40)], ids=["zero", "small", "large"])
def test_kernel_normals_match_the_float64_reference_transform(seed: int, stream: int) -> None:
    """Same words (bit-exact xoshiro256++ lanes and block layout), same transform to float32 precision."""
    n = 3 * _rng.NORMALS_PER_BLOCK + 17
    expected = _reference_normals(seed, stream, n)
    got = _stream_normals(seed, stream, n)
    np.testing.assert_allclose(got, expected, rtol=0, atol=4e-7 * max(1.0, float(np.abs(expected).max())))


def test_standard_normal_passes_ks_and_moment_checks() -> None:
    z = _rng.standard_normal(123, 400_000)
    assert stats.kstest(z, "norm").pvalue > 1e-3
    n = z.size
    assert abs(z.mean()) < 5 / np.sqrt(n)
    assert abs(z.var() - 1) < 5 * np.sqrt(2 / n)
    assert abs(stats.skew(z)) < 5 * np.sqrt(6 / n)
    assert abs(stats.kurtosis(z)) < 5 * np.sqrt(24 / n)


def test_normal_tails_match_and_the_radius_bound_holds() -> None:
    """4 sigma has p = 6.3e-5; the documented radius cut is sqrt(64 ln 2) = 6.66 (p = 2^-32)."""
    z = _rng.standard_normal(7, 4_000_000)
    expected = 2 * stats.norm.sf(4.0) * z.size
    observed = np.sum(np.abs(z) > 4.0)
    assert abs(observed - expected) < 5 * np.sqrt(expected)
    assert 4.5 < np.abs(z).max() <= math.sqrt(64 * math.log(2)) + 1e-5


def test_box_muller_pairs_have_exponential_radius_and_uniform_angle() -> None:
    """Each block holds pairs (z1, z2) at positions (p, p + PAIRS_PER_BLOCK): r^2 / 2 ~ Exp(1), angle
    uniform on the circle, and the two coordinates uncorrelated (also in their squares)."""
    z = _rng.standard_normal(11, 2_000_000 // _rng.NORMALS_PER_BLOCK * _rng.NORMALS_PER_BLOCK, chunk=2**20)
    blocks = z.reshape(-1, 2, _rng.PAIRS_PER_BLOCK)
    z1, z2 = blocks[:, 0].ravel(), blocks[:, 1].ravel()
    assert stats.kstest((z1**2 + z2**2) / 2, "expon").pvalue > 1e-3
    assert stats.kstest(np.arctan2(z2, z1), "uniform", args=(-np.pi, 2 * np.pi)).pvalue > 1e-3
    n = z1.size
    assert abs(np.corrcoef(z1, z2)[0, 1]) < 5 / np.sqrt(n)
    assert abs(np.corrcoef(z1**2, z2**2)[0, 1]) < 5 / np.sqrt(n)


def test_consecutive_draws_and_lanes_are_uncorrelated() -> None:
    """Neighbours in a block come from different lanes or consecutive outputs of one lane."""
    z = _rng.standard_normal(13, 1_000_000)
    n = z.size
    for lag in (1, 2, _rng.N_LANES, _rng.PAIRS_PER_BLOCK, _rng.NORMALS_PER_BLOCK):
        assert abs(np.corrcoef(z[:-lag], z[lag:])[0, 1]) < 5 / np.sqrt(n), lag


def test_uniform_passes_ks() -> None:
    u = _rng.uniform(5, 200_000)
    assert u.min() >= 0 and u.max() < 1
    assert stats.kstest(u, "uniform").pvalue > 1e-3


def test_streams_are_uncorrelated_and_layout_is_chunked() -> None:
    z = _rng.standard_normal(9, (64, 4096), chunk=4096)  # one row per stream
    c = np.corrcoef(z)
    off = c[~np.eye(64, dtype=bool)]
    assert np.abs(off).max() < 6 / np.sqrt(4096)
    # element i is draw i % chunk of stream i // chunk, whatever the requested shape
    flat = _rng.standard_normal(9, 3 * 4096, chunk=4096)
    np.testing.assert_array_equal(flat, z[:3].ravel())


def test_a_fill_consumes_whole_blocks() -> None:
    """The first draws of a stream do not depend on how many are asked for; a fill of n draws uses
    ceil(n / NORMALS_PER_BLOCK) blocks, so a second fill starts at a block boundary."""
    nb = _rng.NORMALS_PER_BLOCK
    long = _rng.standard_normal(3, 5 * nb, chunk=5 * nb)
    np.testing.assert_array_equal(_rng.standard_normal(3, 100, chunk=100), long[:100])
    np.testing.assert_array_equal(_stream_two_fills(3, 100, 50), np.concatenate([long[:100], long[nb : nb + 50]]))


def _stream_two_fills(seed: int, n1: int, n2: int) -> np.ndarray:
    a, b = np.empty(n1, np.float32), np.empty(n2, np.float32)
    _draw_twice(a, b, np.uint64(seed))
    return np.concatenate([a, b]).astype(np.float64)


def test_same_seed_same_numbers_and_seeds_differ() -> None:
    np.testing.assert_array_equal(_rng.standard_normal(1, 1000), _rng.standard_normal(1, 1000))
    assert not np.array_equal(_rng.standard_normal(1, 1000), _rng.standard_normal(2, 1000))


def test_draws_do_not_depend_on_the_thread_count() -> None:
    out = []
    for threads in (1, numba.config.NUMBA_NUM_THREADS):
        numba.set_num_threads(threads)
        try:
            out.append(_rng.standard_normal(21, 50_000, chunk=1000))
        finally:
            numba.set_num_threads(numba.config.NUMBA_NUM_THREADS)
    np.testing.assert_array_equal(out[0], out[1])


@pytest.mark.parametrize("seed, shape, chunk", [(-1, 3, 4), (1.5, 3, 4), (1, -2, 4), (1, 3, 0)])
def test_bad_arguments(seed: object, shape: object, chunk: object) -> None:
    with pytest.raises(ValueError):
        _rng.standard_normal(seed, shape, chunk=chunk)  # type: ignore[arg-type]
