"""The kernels' random streams: correct distributions, independent streams, reproducible layout."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from crossbar import _rng


def test_standard_normal_passes_ks_and_moment_checks() -> None:
    z = _rng.standard_normal(123, 400_000)
    assert stats.kstest(z, "norm").pvalue > 1e-3
    n = z.size
    assert abs(z.mean()) < 5 / np.sqrt(n)
    assert abs(z.var() - 1) < 5 * np.sqrt(2 / n)
    assert abs(stats.skew(z)) < 5 * np.sqrt(6 / n)
    assert abs(stats.kurtosis(z)) < 5 * np.sqrt(24 / n)


def test_normal_tails_match_beyond_the_ziggurat_base() -> None:
    """The tail algorithm (|z| > 3.654) must produce the right mass; 4 sigma has p = 6.3e-5."""
    z = _rng.standard_normal(7, 4_000_000)
    expected = 2 * stats.norm.sf(4.0) * z.size
    observed = np.sum(np.abs(z) > 4.0)
    assert abs(observed - expected) < 5 * np.sqrt(expected)
    assert np.abs(z).max() > 4.5


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


def test_same_seed_same_numbers_and_seeds_differ() -> None:
    np.testing.assert_array_equal(_rng.standard_normal(1, 1000), _rng.standard_normal(1, 1000))
    assert not np.array_equal(_rng.standard_normal(1, 1000), _rng.standard_normal(2, 1000))


@pytest.mark.parametrize("seed, shape, chunk", [(-1, 3, 4), (1.5, 3, 4), (1, -2, 4), (1, 3, 0)])
def test_bad_arguments(seed: object, shape: object, chunk: object) -> None:
    with pytest.raises(ValueError):
        _rng.standard_normal(seed, shape, chunk=chunk)  # type: ignore[arg-type]
