"""Counter-seeded random streams for numba kernels: xoshiro256++ and a 256-layer ziggurat.

Kernels that add fresh noise at every MVM draw their Gaussian numbers inside the fused loop instead of
materializing arrays with NumPy (NumPy's generator costs about 9 ns per normal here, more than the GEMM
it decorates). Work is split in fixed chunks; chunk ``c`` of a call with seed ``s`` owns the stream
``(s, c)``, so results are bit-identical whatever the number of threads. Seeds come from the caller's
``numpy.random.Generator``, so the same chip seed gives the same outputs.

References
----------
D. Blackman and S. Vigna, "Scrambled linear pseudorandom number generators", ACM TOMS 47(4), 2021,
doi:10.1145/3460772 (xoshiro256++, splitmix64 seeding).
G. Marsaglia and W. W. Tsang, "The ziggurat method for generating random variables", J. Stat. Softw.
5(8), 2000, doi:10.18637/jss.v005.i08.
"""

from __future__ import annotations

import math

import numpy as np

from crossbar._jit import inline_kernel, kernel, parallel_kernel, prange

__all__ = ["standard_normal", "uniform"]

_N_LAYERS = 256
_R = 3.6541528853610088  # right edge of the base layer (Marsaglia & Tsang, 256 layers)
_V = 0.00492867323399  # area of each layer


def _ziggurat_tables() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Integer thresholds, widths and densities of the 256-layer ziggurat for 23-bit magnitudes.

    Layer i >= 1 is the rectangle [0, X[i]] x [f(X[i]), f(X[i+1])] with f(x) = exp(-x^2/2); layer 0 is
    the base strip of width V / f(R) holding [0, R] x [0, f(R)] and the tail x > R. All have area V.
    A draw uses 8 bits for the layer, 1 for the sign and 23 for the magnitude, so one 64-bit output of
    the generator gives two normals (float32 resolution of the magnitude within a layer).
    """
    f = lambda x: math.exp(-0.5 * x * x)  # noqa: E731
    x = np.zeros(_N_LAYERS + 1)
    x[0] = _V / f(_R)
    x[1] = _R
    for i in range(1, _N_LAYERS - 1):
        y = f(x[i]) + _V / x[i]
        x[i + 1] = math.sqrt(-2.0 * math.log(y)) if y < 1.0 else 0.0
    x[_N_LAYERS] = 0.0
    scale = 2.0**23
    k = np.array([math.floor(x[i + 1] / x[i] * scale) for i in range(_N_LAYERS)], dtype=np.int64)
    w = x[:_N_LAYERS] / scale
    fx = np.exp(-0.5 * x * x)
    return k, w, fx


_ZIG_K, _ZIG_W, _ZIG_F = _ziggurat_tables()

_U1 = np.uint64(1)
_MASK32 = np.uint64(0xFFFFFFFF)
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)
_S11 = np.uint64(11)
_S17 = np.uint64(17)
_S19 = np.uint64(19)
_S23 = np.uint64(23)
_S27 = np.uint64(27)
_S30 = np.uint64(30)
_S31 = np.uint64(31)
_S32 = np.uint64(32)
_S41 = np.uint64(41)
_S45 = np.uint64(45)
_INV53 = 1.0 / 9007199254740992.0  # 2^-53


@kernel
def _splitmix(z: np.uint64) -> np.uint64:
    z = (z ^ (z >> _S30)) * _MIX1
    z = (z ^ (z >> _S27)) * _MIX2
    return z ^ (z >> _S31)


@kernel
def seed_state(state: np.ndarray, seed: np.uint64, stream: np.uint64) -> None:
    """Fill a 4-word xoshiro256++ state for stream ``stream`` of ``seed`` (splitmix64 expansion)."""
    z = seed ^ _splitmix(stream * _GOLDEN + _U1)
    for i in range(4):
        z = z + _GOLDEN
        state[i] = _splitmix(z)


@inline_kernel
def next_u64(s: np.ndarray) -> np.uint64:
    """xoshiro256++: next 64-bit output; advances the state in place."""
    s0, s1, s2, s3 = s[0], s[1], s[2], s[3]
    t = s0 + s3
    result = ((t << _S23) | (t >> _S41)) + s0
    t = s1 << _S17
    s2 ^= s0
    s3 ^= s1
    s1 ^= s2
    s0 ^= s3
    s2 ^= t
    s3 = (s3 << _S45) | (s3 >> _S19)
    s[0], s[1], s[2], s[3] = s0, s1, s2, s3
    return result


@inline_kernel
def next_uniform(s: np.ndarray) -> float:
    """Uniform double in [0, 1) with 53 random bits."""
    return float(np.int64(next_u64(s) >> _S11)) * _INV53


@inline_kernel
def _normal_from_bits(r: np.int64, s: np.ndarray) -> float:
    """Standard normal from 32 random bits ``r`` by the ziggurat; rare slow paths draw more from ``s``."""
    while True:
        idx = r & 0xFF
        # the sign as a multiplier, not a branch: a random branch mispredicts half the time
        sign = 1.0 - 2.0 * float((r >> 8) & 1)
        rabs = r >> 9
        x = float(rabs) * _ZIG_W[idx]
        if rabs < _ZIG_K[idx]:
            return sign * x
        if idx == 0:
            # Tail beyond R (Marsaglia 1964): a = -ln(U1)/R accepted when -2 ln(U2) > a^2.
            while True:
                a = -math.log(1.0 - next_uniform(s)) / _R
                b = -math.log(1.0 - next_uniform(s))
                if b + b > a * a:
                    return sign * (_R + a)
        if _ZIG_F[idx] + next_uniform(s) * (_ZIG_F[idx + 1] - _ZIG_F[idx]) < math.exp(-0.5 * x * x):
            return sign * x
        r = np.int64(next_u64(s) & _MASK32)  # rejected: start over with fresh bits


@inline_kernel
def next_normal(s: np.ndarray) -> float:
    """One standard normal (uses the low 32 bits of one generator output)."""
    return _normal_from_bits(np.int64(next_u64(s) & _MASK32), s)


@inline_kernel
def fill_normal(out: np.ndarray, n: int, s: np.ndarray) -> None:
    """``out[:n]`` = standard normals, two per generator output (the fast way to draw many)."""
    i = 0
    while i + 1 < n:
        u = next_u64(s)
        out[i] = _normal_from_bits(np.int64(u & _MASK32), s)
        out[i + 1] = _normal_from_bits(np.int64(u >> _S32), s)
        i += 2
    if i < n:
        out[i] = next_normal(s)


@parallel_kernel
def _fill_normal(out: np.ndarray, seed: np.uint64, chunk: int) -> None:
    n = out.shape[0]
    n_chunks = (n + chunk - 1) // chunk
    for c in prange(n_chunks):
        state = np.empty(4, dtype=np.uint64)
        seed_state(state, seed, np.uint64(c))
        lo = c * chunk
        fill_normal(out[lo:], min(n, lo + chunk) - lo, state)


@parallel_kernel
def _fill_uniform(out: np.ndarray, seed: np.uint64, chunk: int) -> None:
    n = out.shape[0]
    n_chunks = (n + chunk - 1) // chunk
    for c in prange(n_chunks):
        state = np.empty(4, dtype=np.uint64)
        seed_state(state, seed, np.uint64(c))
        for i in range(c * chunk, min(n, (c + 1) * chunk)):
            out[i] = next_uniform(state)


def _check_seed_shape(seed: int, shape: int | tuple[int, ...], chunk: int) -> tuple[int, ...]:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= int(seed) < 2**64:
        raise ValueError(f"seed = {seed!r} must be an integer in [0, 2^64)")
    if isinstance(chunk, bool) or not isinstance(chunk, (int, np.integer)) or chunk < 1:
        raise ValueError(f"chunk = {chunk!r} must be a positive integer")
    shape_t = (shape,) if isinstance(shape, (int, np.integer)) else tuple(shape)
    if any(int(d) < 0 for d in shape_t):
        raise ValueError(f"shape = {shape_t} must have non-negative dimensions")
    return tuple(int(d) for d in shape_t)


def standard_normal(seed: int, shape: int | tuple[int, ...], *, chunk: int = 4096) -> np.ndarray:
    """Standard normal float64 samples from the kernels' streams, in C order.

    Element ``i`` of the flattened output is normal number ``i mod chunk`` of stream ``(seed, i // chunk)``
    as :func:`fill_normal` draws them, exactly what a kernel chunk of that size would consume. Used by tests and by NumPy-level code that
    wants the same generator.

    Parameters
    ----------
    seed : int
        Stream seed in [0, 2^64).
    shape : int or tuple of int
        Output shape.
    chunk : int
        Number of consecutive elements drawn from one stream.
    """
    shape_t = _check_seed_shape(seed, shape, chunk)
    out = np.empty(int(np.prod(shape_t)), dtype=np.float64)
    _fill_normal(out, np.uint64(seed), int(chunk))
    return out.reshape(shape_t)


def uniform(seed: int, shape: int | tuple[int, ...], *, chunk: int = 4096) -> np.ndarray:
    """Uniform [0, 1) float64 samples from the kernels' streams (layout as :func:`standard_normal`)."""
    shape_t = _check_seed_shape(seed, shape, chunk)
    out = np.empty(int(np.prod(shape_t)), dtype=np.float64)
    _fill_uniform(out, np.uint64(seed), int(chunk))
    return out.reshape(shape_t)
