"""Numba kernels of the MVM hot path. Arrays and scalars in, preallocated arrays out; no validation.

The public wrappers in :mod:`crossbar.chip` validate and coerce; slow NumPy references of every kernel
live in ``tests/crossbar/reference.py``. Parallel loops run over fixed-size chunks, each with its own
random stream (:mod:`crossbar._rng`), so results do not depend on the thread count.

Every inner loop is branch-free over the array index and calls only arithmetic, ``sqrt``, ``rint``
and the functions of :mod:`crossbar._vmath` (``tanh`` excepted: ``math.tanh``), so LLVM vectorizes it
(the kernels are compiled with ``error_model="numpy"`` for that, see :mod:`crossbar._jit`);
loop-invariant choices (stage switches, activation) are made outside the loops. The threaded kernels
hand out their chunks through an atomic counter (dynamic scheduling, see :mod:`crossbar._jit` for why);
each has a ``*_serial`` twin for small problems that shares its chunk body, so both give the same bits.
"""

from __future__ import annotations

import math

import numpy as np

from crossbar._jit import atomic_add, inline_kernel, parallel_vector_kernel, prange, vector_kernel
from crossbar._rng import fill_normal, normal_stream
from crossbar._vmath import abs_bits, float_from_abs_bits, like, vexp

__all__ = [
    "ACTIVATION_CODES",
    "add_scaled_noise",
    "add_scaled_noise_serial",
    "dac",
    "dac_serial",
    "epilogue",
    "epilogue_serial",
]

_DAC_ROWS = 16
"""Rows per work item of the parallel DAC."""
_MAX_THREADS = 256
"""Slots of a dynamically scheduled parallel loop: each runs chunks taken from a shared atomic counter
until none is left, so any thread count up to this one finds work; spare slots return at once."""

ACTIVATION_CODES = {"identity": 0, "relu": 1, "sigmoid": 2, "tanh": 3}
"""Integer code of each :class:`crossbar.config.Activation` value in the kernels."""


@inline_kernel
def _quantize_row(x: np.ndarray, s: float, clip: bool, n_levels: int, v_read: float, v: np.ndarray) -> None:
    """``v[j] = v_read * Q(x[j] / s)`` (see :func:`dac`), one specialized loop per setting."""
    n = x.shape[0]
    if n_levels > 0:
        if clip:
            for j in range(n):
                v[j] = np.rint(min(max(x[j] / s, -1.0), 1.0) * n_levels) / n_levels * v_read
        else:
            for j in range(n):
                v[j] = np.rint(x[j] / s * n_levels) / n_levels * v_read
    elif clip:
        for j in range(n):
            v[j] = min(max(x[j] / s, -1.0), 1.0) * v_read
    else:
        for j in range(n):
            v[j] = x[j] / s * v_read


@inline_kernel
def _dac_row(
    xs: np.ndarray, b: int, per_sample_absmax: bool, input_max: float, clip: bool, n_levels: int, v_read: float, vs: np.ndarray, v2s: np.ndarray
) -> float:
    """Row ``b`` of :func:`dac`; returns the row's scale ``s``."""
    x = xs[b]
    v = vs[b]
    n_in = x.shape[0]
    if per_sample_absmax:
        peak_bits = 0
        for j in range(n_in):  # max of |x| as an integer reduction over the bit patterns (vectorizes)
            peak_bits = max(peak_bits, abs_bits(x[j]))
        peak = np.float64(float_from_abs_bits(peak_bits, x[0]))
        s = peak if peak > 0.0 else 1.0
    else:
        s = input_max
    _quantize_row(x, s, clip, n_levels, v_read, v)
    if v2s.shape[0] > 0:
        v2 = v2s[b]
        for j in range(n_in):
            v2[j] = v[j] * v[j]
    return s


@parallel_vector_kernel
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
    ``clip`` and rounds to ``n_levels`` steps per unit when ``n_levels > 0``. The arithmetic is done in
    float64, exactly as written (true divisions, as in the reference), then stored in ``v``'s dtype.
    """
    n_chunks = (x.shape[0] + _DAC_ROWS - 1) // _DAC_ROWS
    next_chunk = np.zeros(1, dtype=np.int64)
    for _ in prange(min(n_chunks, _MAX_THREADS)):
        while True:
            c = atomic_add(next_chunk, 0, 1)
            if c >= n_chunks:
                break
            for b in range(c * _DAC_ROWS, min(x.shape[0], (c + 1) * _DAC_ROWS)):
                scale[b] = _dac_row(x, b, per_sample_absmax, input_max, clip, n_levels, v_read, v, v2)


@vector_kernel
def dac_serial(
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
    """:func:`dac` on the calling thread (for small inputs, where starting threads costs more)."""
    for b in range(x.shape[0]):
        scale[b] = _dac_row(x, b, per_sample_absmax, input_max, clip, n_levels, v_read, v, v2)


@inline_kernel
def _noisy_current(p: np.ndarray, q: np.ndarray, z: np.ndarray, has_var: bool, out_var: float, cur: np.ndarray) -> None:
    """``cur = p + sqrt(q + out_var) z`` (with variances ``q``) or ``p + sqrt(out_var) z``, in the dtype
    of ``cur``."""
    n = cur.shape[0]
    ov = like(out_var, cur)
    zero = like(0.0, cur)
    if has_var:
        for i in range(n):
            cur[i] = p[i] + math.sqrt(max(ov + q[i], zero)) * like(z[i], cur)
    else:
        out_std = math.sqrt(ov)
        for i in range(n):
            cur[i] = p[i] + out_std * like(z[i], cur)


@inline_kernel
def _activation_noise(acc: np.ndarray, n_b: float, unc_std: float, z: np.ndarray, multiplicative: bool) -> None:
    n = acc.shape[0]
    nb = like(n_b, acc)
    su = like(unc_std, acc)
    if multiplicative:
        one = like(1.0, acc)
        for i in range(n):
            acc[i] *= one + nb + su * like(z[i], acc)
    else:
        for i in range(n):
            acc[i] += nb + su * like(z[i], acc)


@inline_kernel
def _epilogue_draws(partial: np.ndarray, z_read: np.ndarray, z_corr: np.ndarray, z_unc: np.ndarray, add_noise: bool,
                    corr_std: float, unc_std: float) -> int:
    """Normals the epilogue draws per sample (read/output noise per partial, uncorrelated, correlated)."""
    n_part, _, n_out = partial.shape
    draw_read = add_noise and not z_read.shape[0] > 0
    draw_unc = unc_std > 0.0 and not z_unc.shape[0] > 0
    draw_corr = corr_std > 0.0 and not z_corr.shape[0] > 0
    return (n_part * n_out if draw_read else 0) + (n_out if draw_unc else 0) + (1 if draw_corr else 0)


@inline_kernel
def _epilogue_chunk(
    c: int,
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
    acc: np.ndarray,
    cur: np.ndarray,
    zc: np.ndarray,
) -> None:
    """Samples ``c * chunk`` to ``(c + 1) * chunk - 1`` of :func:`epilogue`, with the worker's scratch
    buffers ``acc``, ``cur`` (``n_out`` each) and ``zc`` (``_epilogue_draws(...) * chunk`` normals)."""
    n_part, n_batch, n_out = partial.shape
    has_var = partial_var.shape[0] > 0
    given_read = z_read.shape[0] > 0
    given_corr = z_corr.shape[0] > 0
    given_unc = z_unc.shape[0] > 0
    draw_unc = unc_std > 0.0 and not given_unc
    n_draw = _epilogue_draws(partial, z_read, z_corr, z_unc, add_noise, corr_std, unc_std)
    lo = c * chunk
    hi = min(n_batch, lo + chunk)
    if n_draw > 0:
        fill_normal(zc, n_draw * (hi - lo), normal_stream(seed, np.uint64(c)))
    zero = like(0.0, acc)
    one = like(1.0, acc)
    for b in range(lo, hi):
        zb = zc[(b - lo) * n_draw :]
        pos = 0
        acc[:] = zero
        for p in range(n_part):
            pb = partial[p, b]
            qb = partial_var[p, b] if has_var else pb
            src = pb  # the current each ADC reads: the partial itself, or with its read and output noise
            if add_noise:
                if given_read:
                    _noisy_current(pb, qb, z_read[p, b], has_var, out_var, cur)
                else:
                    _noisy_current(pb, qb, zb[pos : pos + n_out], has_var, out_var, cur)
                    pos += n_out
                src = cur
            g = gain[p]
            fs = like(full_scale[p], acc)
            if adc_levels > 0:
                step = fs / like(adc_levels, acc)
                inv_step = one / step
                for i in range(n_out):
                    acc[i] += like(g[i], acc) * (np.rint(min(max(src[i], -fs), fs) * inv_step) * step)
            elif full_scale[p] < np.inf:
                for i in range(n_out):
                    acc[i] += like(g[i], acc) * min(max(src[i], -fs), fs)
            else:
                for i in range(n_out):
                    acc[i] += like(g[i], acc) * src[i]
        s = like(scale[b], acc)
        yb = y[b]  # the activation writes the output row; its noise is added there in place
        if activation == 0:
            for i in range(n_out):
                yb[i] = s * acc[i] + like(bias[i], acc)
        elif activation == 1:
            for i in range(n_out):
                yb[i] = max(s * acc[i] + like(bias[i], acc), zero)
        elif activation == 2:
            for i in range(n_out):  # one exp, no branch: t = e^-|u|, sigmoid = 1/(1+t) or t/(1+t)
                u = s * acc[i] + like(bias[i], acc)
                t = vexp(-abs(u))
                r = one / (one + t)
                yb[i] = r if u >= zero else t * r
        else:
            for i in range(n_out):
                yb[i] = math.tanh(s * acc[i] + like(bias[i], acc))
        if corr_std > 0.0 or unc_std > 0.0:
            n_b = 0.0
            if corr_std > 0.0:
                n_b = corr_std * (z_corr[b] if given_corr else np.float64(zb[pos + (n_out if draw_unc else 0)]))
            if unc_std == 0.0:
                _activation_noise(yb, n_b, 0.0, yb, multiplicative)
            elif given_unc:
                _activation_noise(yb, n_b, unc_std, z_unc[b], multiplicative)
            else:
                _activation_noise(yb, n_b, unc_std, zb[pos : pos + n_out], multiplicative)


@parallel_vector_kernel
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

    The arithmetic is done in the dtype of ``partial`` (the work dtype; ``gain``, ``scale`` and ``bias``
    should have it too, else they are converted element by element): float64 for float64 MVMs, float32
    for float32 ones, whose outputs are float32 anyway (twice the vector width). Noise comes from the
    given arrays ``z_read`` (n_part, B, out), ``z_corr`` (B,), ``z_unc`` (B, out) when they are
    non-empty (used by tests), else from normal stream ``(seed, c)`` of chunk ``c`` (samples
    ``c * chunk`` to ``(c + 1) * chunk - 1``): one fill (:func:`crossbar._rng.fill_normal`) of all the
    draws of the chunk, sample after sample, each in the order z_read over (p, i), z_unc over i, z_corr.
    """
    n_chunks = (partial.shape[1] + chunk - 1) // chunk
    n_zc = max(_epilogue_draws(partial, z_read, z_corr, z_unc, add_noise, corr_std, unc_std) * chunk, 1)
    next_chunk = np.zeros(1, dtype=np.int64)
    for _ in prange(min(n_chunks, _MAX_THREADS)):
        acc = np.empty(partial.shape[2], dtype=partial.dtype)
        cur = np.empty(partial.shape[2], dtype=partial.dtype)
        zc = np.empty(n_zc, dtype=np.float32)
        while True:
            c = atomic_add(next_chunk, 0, 1)
            if c >= n_chunks:
                break
            _epilogue_chunk(c, partial, partial_var, gain, scale, full_scale, adc_levels, add_noise, out_var, bias, activation, multiplicative, corr_std, unc_std, seed, chunk, z_read, z_corr, z_unc, y, acc, cur, zc)


@vector_kernel
def epilogue_serial(
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
    """:func:`epilogue` on the calling thread (for small batches, where starting threads costs more)."""
    n_batch = partial.shape[1]
    acc = np.empty(partial.shape[2], dtype=partial.dtype)
    cur = np.empty(partial.shape[2], dtype=partial.dtype)
    zc = np.empty(max(_epilogue_draws(partial, z_read, z_corr, z_unc, add_noise, corr_std, unc_std) * chunk, 1), dtype=np.float32)
    for c in range((n_batch + chunk - 1) // chunk):
        _epilogue_chunk(c, partial, partial_var, gain, scale, full_scale, adc_levels, add_noise, out_var, bias, activation, multiplicative, corr_std, unc_std, seed, chunk, z_read, z_corr, z_unc, y, acc, cur, zc)


@inline_kernel
def _noise_chunk(c: int, base: np.ndarray, var: np.ndarray, seed: np.uint64, chunk: int, out: np.ndarray) -> None:
    """Rows ``c * chunk`` to ``(c + 1) * chunk - 1`` of :func:`add_scaled_noise`."""
    n_rows, n_cols = base.shape
    stream = normal_stream(seed, np.uint64(c))
    lo = c * chunk
    hi = min(n_rows, lo + chunk)
    z = np.empty(max((hi - lo) * n_cols, 1), dtype=np.float32)
    fill_normal(z, (hi - lo) * n_cols, stream)
    zero = like(0.0, out)
    for r in range(lo, hi):
        b = base[r]
        v = var[r]
        o = out[r]
        off = (r - lo) * n_cols
        for j in range(n_cols):
            o[j] = like(b[j], out) + math.sqrt(max(like(v[j], out), zero)) * like(z[off + j], out)


@parallel_vector_kernel
def add_scaled_noise(base: np.ndarray, var: np.ndarray, seed: np.uint64, chunk: int, out: np.ndarray) -> None:
    """``out = base + sqrt(var) * z`` elementwise for 2-D arrays, in the dtype of ``out``; the rows
    ``c * chunk`` to ``(c + 1) * chunk - 1`` take their normals, row after row, from one fill of
    stream ``(seed, c)``."""
    n_chunks = (base.shape[0] + chunk - 1) // chunk
    next_chunk = np.zeros(1, dtype=np.int64)
    for _ in prange(min(n_chunks, _MAX_THREADS)):
        while True:
            c = atomic_add(next_chunk, 0, 1)
            if c >= n_chunks:
                break
            _noise_chunk(c, base, var, seed, chunk, out)


@vector_kernel
def add_scaled_noise_serial(base: np.ndarray, var: np.ndarray, seed: np.uint64, chunk: int, out: np.ndarray) -> None:
    """:func:`add_scaled_noise` on the calling thread (for small matrices)."""
    for c in range((base.shape[0] + chunk - 1) // chunk):
        _noise_chunk(c, base, var, seed, chunk, out)
