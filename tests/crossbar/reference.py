"""Slow, obvious NumPy references for the chip's kernels and its whole MVM.

Written for reading, not speed: explicit loops over samples, tiles and columns, one formula per line,
taken from the docstrings of the stages (DESIGN.md, "The chip: one MVM, stage by stage").
"""

from __future__ import annotations

import math

import numpy as np

from crossbar.chip import ProgrammedMatrix, ReadState
from crossbar.config import InputRange


def quantize_symmetric(value: float, full_scale: float, bits: int | None) -> float:
    """Clip to [-fs, fs] and round to the grid of a signed mid-tread quantizer with 2^bits - 1 levels."""
    value = min(max(value, -full_scale), full_scale)
    if bits is None:
        return value
    n = 2 ** (bits - 1) - 1
    step = full_scale / n
    return float(np.rint(value * (1.0 / step)) * step)


def dac(x_row: np.ndarray, m: ProgrammedMatrix) -> tuple[np.ndarray, float]:
    """Voltages on the word lines for one input vector, and the digital input scale."""
    cfg, stages = m.config, m.config.stages
    if cfg.dac.range_mode is InputRange.PER_SAMPLE_ABSMAX:
        peak = float(np.max(np.abs(x_row)))
        s = peak if peak > 0 else 1.0
        clip = False
    else:
        s = cfg.dac.input_max
        clip = stages.dac
    volts = np.empty(len(x_row))
    for j, xj in enumerate(x_row):
        xn = float(xj) / s
        if clip:
            xn = min(max(xn, -1.0), 1.0)
        if stages.dac and cfg.dac.bits is not None:
            n = 2 ** (cfg.dac.bits - 1) - 1
            xn = float(np.rint(xn * n) / n)
        volts[j] = xn * cfg.tile.read_voltage_volt
    return volts, s


def activation(u: float, name: str) -> float:
    if name == "identity":
        return u
    if name == "relu":
        return max(u, 0.0)
    if name == "sigmoid":
        return 1.0 / (1.0 + math.exp(-u))
    if name == "tanh":
        return math.tanh(u)
    raise ValueError(name)


def mvm(
    m: ProgrammedMatrix,
    x: np.ndarray,
    state: ReadState,
    z_read: np.ndarray,
    z_corr: np.ndarray,
    z_unc: np.ndarray,
) -> np.ndarray:
    """The whole MVM of a programmed matrix at one read state, with the given standard-normal draws.

    ``z_read[p, b, i]`` is the draw for partial p (channel * n_row_tiles + tile row), sample b, output i;
    ``z_corr[b]`` and ``z_unc[b, i]`` the activation-noise draws.
    """
    cfg, stages, grid = m.config, m.config.stages, m.grid
    i_dev = m.profile.g_range_siemens * cfg.tile.read_voltage_volt
    out_var = (cfg.adc.output_noise_std_rel * i_dev) ** 2 if stages.output_noise else 0.0
    adc_bits = cfg.adc.bits if stages.adc else None
    n_rt = grid.n_row_tiles
    fresh = state.variance_siemens2 is not None
    y = np.zeros((x.shape[0], m.out_features))
    for b in range(x.shape[0]):
        volts, s = dac(x[b], m)
        acc = np.zeros(m.out_features)
        for ch, mat in enumerate(state.signal_siemens):
            for k in range(n_rt):
                rows = grid.row_slice(k)
                p = ch * n_rt + k
                for i in range(m.out_features):
                    current = float(np.dot(volts[rows], mat[rows, i]))
                    var = out_var
                    if fresh:
                        var += float(np.dot(volts[rows] ** 2, state.variance_siemens2[ch][rows, i]))
                    if var > 0:
                        current += math.sqrt(var) * z_read[p, b, i]
                    if stages.adc:
                        current = quantize_symmetric(current, cfg.adc.full_scale_rel * i_dev, adc_bits)
                    acc[i] += state.gain[p, i] * current
        act = cfg.activation
        corr = act.correlated_std_rel if stages.activation_noise else 0.0
        unc = act.uncorrelated_std_rel if stages.activation_noise else 0.0
        for i in range(m.out_features):
            u = s * acc[i] + (m.bias[i] if m.bias is not None else 0.0)
            u = activation(u, act.function.value)
            noise = corr * z_corr[b] + unc * z_unc[b, i]
            y[b, i] = u * (1 + noise) if act.kind.value == "multiplicative" else u + noise
    return y


# ----------------------------------------------------------------------------- random streams
_M64 = (1 << 64) - 1


def splitmix64(z: int) -> int:
    """One splitmix64 finalization of a 64-bit integer (Python ints, masked to 64 bits)."""
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _M64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _M64
    return z ^ (z >> 31)


def xoshiro_seed(seed: int, stream: int) -> list[int]:
    """The 4-word xoshiro256++ state of sub-stream ``stream`` of ``seed`` (splitmix64 expansion)."""
    golden = 0x9E3779B97F4A7C15
    z = seed ^ splitmix64((stream * golden + 1) & _M64)
    state = []
    for _ in range(4):
        z = (z + golden) & _M64
        state.append(splitmix64(z))
    return state


def xoshiro_next(s: list[int]) -> int:
    """xoshiro256++ (Blackman and Vigna): the next 64-bit output; advances ``s`` in place."""
    rotl = lambda x, k: ((x << k) | (x >> (64 - k))) & _M64  # noqa: E731
    result = (rotl((s[0] + s[3]) & _M64, 23) + s[0]) & _M64
    t = (s[1] << 17) & _M64
    s[2] ^= s[0]
    s[3] ^= s[1]
    s[1] ^= s[2]
    s[0] ^= s[3]
    s[2] ^= t
    s[3] = rotl(s[3], 45)
    return result


def normal_stream_words(seed: int, stream: int, n_blocks: int, n_lanes: int, pairs_per_block: int) -> list[int]:
    """The 64-bit words a normal stream turns into normals, block after block: word ``k * n_lanes + l``
    of a block is output ``k`` of lane ``l``, lane ``l`` being sub-stream ``stream * n_lanes + l``."""
    lanes = [xoshiro_seed(seed, stream * n_lanes + lane) for lane in range(n_lanes)]
    words = []
    for _ in range(n_blocks):
        block = [0] * pairs_per_block
        for k in range(pairs_per_block // n_lanes):
            for lane in range(n_lanes):
                block[k * n_lanes + lane] = xoshiro_next(lanes[lane])
        words.extend(block)
    return words


def box_muller_block(words: list[int]) -> np.ndarray:
    """Normals of one block in float64, exactly as documented in ``crossbar._rng._box_muller``:
    ``u = (hi | 1) 2^-32``, ``r = sqrt(-2 ln u)``, ``t = (j + 1/2) (pi/2) 2^-22 - pi/4`` from the low
    22 bits, then bit 22 swaps the pair and bits 23, 24 flip the signs. First all cosines, then all sines."""
    n = len(words)
    out = np.empty(2 * n)
    for p, w in enumerate(words):
        lo, hi = w & 0xFFFFFFFF, w >> 32
        u = (hi | 1) * 2.0**-32
        r = math.sqrt(-2.0 * math.log(u))
        t = ((lo & 0x3FFFFF) + 0.5) * (math.pi / 2) * 2.0**-22 - math.pi / 4
        a, b = r * math.cos(t), r * math.sin(t)
        if lo >> 22 & 1:
            a, b = b, a
        out[p] = -a if lo >> 23 & 1 else a
        out[n + p] = -b if lo >> 24 & 1 else b
    return out
