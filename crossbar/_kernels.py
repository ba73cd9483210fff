"""Numba kernels of the MVM hot path. Arrays and scalars in, preallocated arrays out; no validation.

The public wrappers in :mod:`crossbar.chip` validate and coerce; slow NumPy references of every kernel
live in ``tests/crossbar/reference.py``. Parallel loops run over fixed-size chunks, each with its own
random stream (:mod:`crossbar._rng`), so results do not depend on the thread count.
"""

from __future__ import annotations

import math

import numpy as np

from crossbar._jit import parallel_kernel, prange
from crossbar._rng import fill_normal, next_normal, seed_state

__all__ = ["ACTIVATION_CODES", "add_scaled_noise", "dac", "epilogue"]

ACTIVATION_CODES = {"identity": 0, "relu": 1, "sigmoid": 2, "tanh": 3}
"""Integer code of each :class:`crossbar.config.Activation` value in the kernels."""


@parallel_kernel
def dac(
    x: np.ndarray,
    per_sample_absmax: bool,
    input_max: float,
    clip: bool,
    n_levels: int,
    v_read: float,
    v: np.ndarray,
    v2: np.ndarray,
    scale: np.ndarray,
) -> None:
    """Input DAC: normalize each row of ``x`` to [-1, 1], quantize, drive with ``v_read``.

    Writes ``v[b, j] = v_read * Q(x[b, j] / s_b)`` and, when ``v2`` has rows, ``v2 = v**2``; ``scale[b] =
    s_b`` is ``max_j |x[b, j]|`` (1 for an all-zero row) or ``input_max``. ``Q`` clips to [-1, 1] when
    ``clip`` and rounds to ``n_levels`` steps per unit when ``n_levels > 0``.
    """
    n_batch, n_in = x.shape
    want_square = v2.shape[0] > 0
    for b in prange(n_batch):
        if per_sample_absmax:
            peak = 0.0
            for j in range(n_in):
                a = abs(x[b, j])
                if a > peak:
                    peak = a
            s = peak if peak > 0.0 else 1.0
        else:
            s = input_max
        scale[b] = s
        for j in range(n_in):
            xn = x[b, j] / s
            if clip:
                xn = min(max(xn, -1.0), 1.0)
            if n_levels > 0:
                xn = np.rint(xn * n_levels) / n_levels
            vv = xn * v_read
            v[b, j] = vv
            if want_square:
                v2[b, j] = vv * vv


@parallel_kernel
def epilogue(
    partial: np.ndarray,
    partial_var: np.ndarray,
    gain: np.ndarray,
    scale: np.ndarray,
    full_scale: np.ndarray,
    adc_levels: int,
    add_noise: bool,
    out_var: float,
    bias: np.ndarray,
    activation: int,
    multiplicative: bool,
    corr_std: float,
    unc_std: float,
    seed: np.uint64,
    chunk: int,
    z_read: np.ndarray,
    z_corr: np.ndarray,
    z_unc: np.ndarray,
    y: np.ndarray,
) -> None:
    """Everything after the array GEMMs, fused: noise, ADC, digital rescale and sum, bias, activation.

    For sample b and output i, with partial currents ``P[p, b, i]`` (one per tile row and readout
    channel) and their read-noise variances ``Q[p, b, i]``::

        I_p = P[p, b, i] + sqrt(Q[p, b, i] + out_var) z                       (if add_noise)
        I_p = step rint(clip(I_p, -fs_p, fs_p) / step),  step = fs_p / adc_levels  (ADC)
        u   = scale[b] * sum_p gain[p, i] I_p + bias[i]
        y   = phi(u) + s_c n_b + s_u n_bi   or   phi(u) (1 + s_c n_b + s_u n_bi)

    Noise comes from the given arrays ``z_read`` (n_part, B, out), ``z_corr`` (B,), ``z_unc`` (B, out)
    when they are non-empty (used by tests), else from stream ``(seed, b // chunk)``, drawn in the order
    z_read over (p, i), then z_corr, then z_unc over i, sample by sample.
    """
    n_part, n_batch, n_out = partial.shape
    has_var = partial_var.shape[0] > 0
    given_read = z_read.shape[0] > 0
    given_corr = z_corr.shape[0] > 0
    given_unc = z_unc.shape[0] > 0
    out_std = math.sqrt(out_var)
    n_chunks = (n_batch + chunk - 1) // chunk
    for c in prange(n_chunks):
        state = np.empty(4, dtype=np.uint64)
        seed_state(state, seed, np.uint64(c))
        acc = np.empty(n_out, dtype=np.float64)
        cur = np.empty(n_out, dtype=np.float64)
        z = np.zeros(n_out, dtype=np.float64)
        for b in range(c * chunk, min(n_batch, (c + 1) * chunk)):
            acc[:] = 0.0
            for p in range(n_part):
                # Each loop below is branch-free over i so that it vectorizes; the draws come first, in
                # a tight loop of their own.
                if add_noise:
                    if given_read:
                        for i in range(n_out):
                            z[i] = z_read[p, b, i]
                    else:
                        fill_normal(z, n_out, state)
                    if has_var:
                        for i in range(n_out):
                            cur[i] = partial[p, b, i] + math.sqrt(max(out_var + partial_var[p, b, i], 0.0)) * z[i]
                    else:
                        for i in range(n_out):
                            cur[i] = partial[p, b, i] + out_std * z[i]
                else:
                    for i in range(n_out):
                        cur[i] = partial[p, b, i]
                fs = full_scale[p]
                if adc_levels > 0:
                    step = fs / adc_levels
                    inv_step = 1.0 / step
                    for i in range(n_out):
                        acc[i] += gain[p, i] * (np.rint(min(max(cur[i], -fs), fs) * inv_step) * step)
                elif fs < np.inf:
                    for i in range(n_out):
                        acc[i] += gain[p, i] * min(max(cur[i], -fs), fs)
                else:
                    for i in range(n_out):
                        acc[i] += gain[p, i] * cur[i]
            s = scale[b]
            for i in range(n_out):
                acc[i] = s * acc[i] + bias[i]
            if activation == 1:
                for i in range(n_out):
                    acc[i] = max(acc[i], 0.0)
            elif activation == 2:
                for i in range(n_out):  # one exp, no branch: t = e^-|u|, sigmoid = 1/(1+t) or t/(1+t)
                    u = acc[i]
                    t = math.exp(-abs(u))
                    r = 1.0 / (1.0 + t)
                    acc[i] = r if u >= 0.0 else t * r
            elif activation == 3:
                for i in range(n_out):
                    acc[i] = math.tanh(acc[i])
            if corr_std > 0.0 or unc_std > 0.0:
                n_b = 0.0
                if corr_std > 0.0:
                    n_b = corr_std * (z_corr[b] if given_corr else next_normal(state))
                if unc_std > 0.0:
                    if given_unc:
                        for i in range(n_out):
                            z[i] = z_unc[b, i]
                    else:
                        fill_normal(z, n_out, state)
                else:
                    z[:] = 0.0
                if multiplicative:
                    for i in range(n_out):
                        acc[i] *= 1.0 + n_b + unc_std * z[i]
                else:
                    for i in range(n_out):
                        acc[i] += n_b + unc_std * z[i]
            for i in range(n_out):
                y[b, i] = acc[i]


@parallel_kernel
def add_scaled_noise(base: np.ndarray, std: np.ndarray, seed: np.uint64, chunk: int, out: np.ndarray) -> None:
    """``out = base + std * z`` elementwise for 2-D arrays, z from stream ``(seed, row // chunk)``."""
    n_rows, n_cols = base.shape
    n_chunks = (n_rows + chunk - 1) // chunk
    for c in prange(n_chunks):
        state = np.empty(4, dtype=np.uint64)
        seed_state(state, seed, np.uint64(c))
        z = np.empty(n_cols, dtype=np.float64)
        for r in range(c * chunk, min(n_rows, (c + 1) * chunk)):
            fill_normal(z, n_cols, state)
            for j in range(n_cols):
                out[r, j] = base[r, j] + std[r, j] * z[j]
