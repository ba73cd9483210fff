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
