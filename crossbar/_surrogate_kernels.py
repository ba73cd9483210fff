"""numba kernels of the differentiable surrogate's element-wise stages on the CPU (:mod:`crossbar.nn.surrogate`).

The torch ops these replace are each one pass over memory, often one allocation, and a few
microseconds of dispatch; a surrogate forward had about forty of them around its one GEMM. Here every
stage is one pass, and the kernels are serial: the caller's torch threads run the GEMM, and a loaded
machine does not stall on thread hand-offs between short parallel regions. NumPy arrays in,
preallocated outputs; scalars come in the arrays' dtype, so float32 work stays float32. Loops index
from ``range`` starts at 0 on row views: an index numba cannot prove non-negative gets a wraparound
branch that stops the vectorizer (measured: ten times slower).

Random numbers: :func:`fill_standard_normal` writes the draw of a seed, element ``i`` being normal
``i mod C`` of stream ``(seed, i // C)`` of :mod:`crossbar._rng` (``C`` = :data:`NORMAL_CHUNK`).
Drawing inside the element-wise kernels instead (no array of draws) was tried and measured no faster:
the generator, not the memory traffic, is the cost. Every kernel has a torch counterpart in
:mod:`crossbar.nn.surrogate` (the path on other devices; the tests compare both) and the loop reference
in ``tests/nn/test_surrogate.py``.
"""

from __future__ import annotations

import math

import numpy as np

from crossbar._jit import inline_kernel, vector_kernel
from crossbar._rng import fill_normal, normal_stream

__all__ = [
    "NORMAL_CHUNK",
    "abs_max_backward",
    "dac_codes",
    "fill_standard_normal",
    "noisy_weight",
    "read_out",
    "read_out_sum",
    "read_variance",
    "row_scales",
]

NORMAL_CHUNK = 1 << 16
"""Normals per stream of one draw."""


@vector_kernel
def fill_standard_normal(out: np.ndarray, seed: np.uint64) -> None:
    """``out`` (1-D, contiguous, float32 or float64) = the standard normals of draw ``seed`` (module docstring)."""
    n = out.shape[0]
    for c in range((n + NORMAL_CHUNK - 1) // NORMAL_CHUNK):
        lo = c * NORMAL_CHUNK
        fill_normal(out[lo:], min(n, lo + NORMAL_CHUNK) - lo, normal_stream(seed, np.uint64(c)))


@inline_kernel
def _row_abs_max(row: np.ndarray) -> float:
    """``max_j |row_j|`` with eight running maxima (a single chain does not vectorize without fastmath;
    the maximum is exact in any order)."""
    m = row.shape[0]
    zero = row[0] - row[0] if m else 0.0
    l0 = l1 = l2 = l3 = l4 = l5 = l6 = l7 = zero
    full = m - m % 8
    for j in range(0, full, 8):
        l0 = max(l0, abs(row[j]))
        l1 = max(l1, abs(row[j + 1]))
        l2 = max(l2, abs(row[j + 2]))
        l3 = max(l3, abs(row[j + 3]))
        l4 = max(l4, abs(row[j + 4]))
        l5 = max(l5, abs(row[j + 5]))
        l6 = max(l6, abs(row[j + 6]))
        l7 = max(l7, abs(row[j + 7]))
    best = max(max(max(l0, l1), max(l2, l3)), max(max(l4, l5), max(l6, l7)))
    for j in range(full, m):
        best = max(best, abs(row[j]))
    return best


@vector_kernel
def row_scales(t: np.ndarray, peak: np.ndarray, s: np.ndarray) -> None:
    """Per row of ``t`` (n, m): ``peak = max_j |t_j|`` and the scale ``s = peak``, 1 for a row of zeros."""
    for i in range(t.shape[0]):
        p = _row_abs_max(t[i])
        peak[i] = p
        s[i] = p if p > 0 else p + 1


@vector_kernel
def noisy_weight(w: np.ndarray, s: np.ndarray, peak: np.ndarray, compute_scale: bool, m: float, z1: np.ndarray,
                 a0: float, a1: float, a2: float, z2: np.ndarray, b0: float, b1: float, b2: float, two: bool, tiny: float,
                 out: np.ndarray, slope: np.ndarray, want_slope: bool) -> None:
    """``out = m w_rel + sum_t sqrt(max(v_t, tiny)) z_t`` with ``w_rel = w / s``, ``v_t = q0 + q1 |w_rel| + q2 w_rel^2``.

    ``w``, ``z1``, ``z2``, ``out``, ``slope``: (n_rows, R), C-contiguous; ``s``, ``peak`` (n_rows,).
    ``compute_scale``: first set every row's ``peak`` and scale ``s`` as :func:`row_scales` (the row is
    then in cache for the pass). Term 1 has coefficients ``a``, term 2 (``two``) ``b``. With ``want_slope`` also
    ``slope = m + sum_t z_t (q1 sign(w_rel) / 2 + q2 w_rel) / std_t`` (0 where ``v_t <= tiny``): the
    derivative of ``out`` with respect to ``w_rel``. ``out`` must not overlap the inputs: written in
    place into ``z1`` the loop runs scalar (measured eight times slower).
    """
    n_rows, r = w.shape
    half_a1 = a1 * 0.5
    half_b1 = b1 * 0.5
    for q in range(n_rows):
        ws, z1s, z2s, os_ = w[q], z1[q], z2[q], out[q]
        if compute_scale:
            pq = _row_abs_max(ws)
            peak[q] = pq
            s[q] = pq if pq > 0 else pq + 1
        sq = s[q]
        if want_slope:
            ss = slope[q]
            for j in range(r):
                wr = ws[j] / sq
                aw = abs(wr)
                sgn = np.sign(wr)
                v = a0 + a1 * aw + a2 * wr * wr
                d = m + z1s[j] * (half_a1 * sgn + a2 * wr) / math.sqrt(max(v, tiny)) if v > tiny else m
                if two:
                    v2 = b0 + b1 * aw + b2 * wr * wr
                    if v2 > tiny:
                        d += z2s[j] * (half_b1 * sgn + b2 * wr) / math.sqrt(v2)
                ss[j] = d
        for j in range(r):
            wr = ws[j] / sq
            aw = abs(wr)
            acc = m * wr + math.sqrt(max(a0 + a1 * aw + a2 * wr * wr, tiny)) * z1s[j]
            if two:
                acc += math.sqrt(max(b0 + b1 * aw + b2 * wr * wr, tiny)) * z2s[j]
            os_[j] = acc


@vector_kernel
def read_out(p: np.ndarray, z: np.ndarray, std: np.ndarray, use_std: bool, sigma: float, noisy: bool, limit: float,
             quantize: bool, scale: np.ndarray, zero: float, out: np.ndarray, gate: np.ndarray, want_gate: bool) -> None:
    """Every tile partial read out: ``out = scale Q(clip(v, -limit, limit))``, ``v = p + (std or sigma) z``.

    ``p``, ``z``, ``std``, ``out``, ``gate``: (K, B, n_out); ``scale`` (K, n_out). ``noisy``: add the
    noise (``std`` with ``use_std``, else the constant ``sigma``). ``Q`` rounds half to even
    (``quantize``, as ``torch.round``). With ``want_gate`` also ``gate = scale 1{|v| <= limit}``, the
    derivative of ``out`` with respect to ``p``. ``out`` may be ``p``.
    """
    k_tiles, n_b, n_out = p.shape
    for k in range(k_tiles):
        sc = scale[k]
        for b in range(n_b):
            ps, zs, ss, os_, gs = p[k, b], z[k, b], std[k, b], out[k, b], gate[k, b]
            for o in range(n_out):
                v = ps[o]
                if noisy:
                    v += (ss[o] if use_std else sigma) * zs[o]
                if want_gate:
                    gs[o] = sc[o] if abs(v) <= limit else zero
                v = min(max(v, -limit), limit)
                if quantize:
                    v = np.rint(v)
                os_[o] = sc[o] * v


@vector_kernel
def read_out_sum(p: np.ndarray, z: np.ndarray, var: np.ndarray, use_var: bool, beta: float, sigma: float, noisy: bool,
                 tiny: float, limit: float, quantize: bool, scale: np.ndarray, s_x: np.ndarray, bias: np.ndarray,
                 has_bias: bool, zero: float, y: np.ndarray) -> None:
    """The read-out and the digital stage without gradients: ``y = s_x sum_k scale_k Q(clip(v_k)) + bias``.

    ``v = p + std z`` (with ``noisy``) and, when the noise depends on the data (``use_var`` or
    ``beta > 0``), ``std = sqrt(max(var + beta |p| + sigma^2, tiny))`` (``var`` only with ``use_var``),
    else ``std = sigma``; ``Q`` as in :func:`read_out`. ``p``, ``z``, ``var`` (K, B, n_out), ``scale``
    (K, n_out), ``y`` (B, n_out; it holds the running sum over tile rows), ``s_x`` (B,), ``bias`` (n_out,).
    """
    k_tiles, n_b, n_out = p.shape
    sigma2 = sigma * sigma
    dependent = use_var or beta > 0
    for k in range(k_tiles):
        sc = scale[k]
        last = k == k_tiles - 1
        for b in range(n_b):
            ps, zs, vs, ys = p[k, b], z[k, b], var[k, b], y[b]
            sx = s_x[b]
            for o in range(n_out):
                v = ps[o]
                if noisy:
                    if dependent:
                        sd = math.sqrt(max((vs[o] if use_var else zero) + beta * abs(v) + sigma2, tiny))
                        v += sd * zs[o]
                    else:
                        v += sigma * zs[o]
                v = min(max(v, -limit), limit)
                if quantize:
                    v = np.rint(v)
                acc = sc[o] * v if k == 0 else ys[o] + sc[o] * v
                if last:
                    acc = acc * sx + (bias[o] if has_bias else zero)
                ys[o] = acc


@vector_kernel
def read_variance(w: np.ndarray, s: np.ndarray, alpha: float, alpha0: float, out: np.ndarray) -> None:
    """Per-read variance of every device, ``out = alpha |w / s| + alpha0``; ``w``, ``out`` (n_rows, R), ``s`` (n_rows,)."""
    n_rows, r = w.shape
    for q in range(n_rows):
        sq = s[q]
        ws, os_ = w[q], out[q]
        for j in range(r):
            os_[j] = alpha * abs(ws[j] / sq) + alpha0


@vector_kernel
def dac_codes(x: np.ndarray, peak: np.ndarray, s: np.ndarray, inv_unit: float, quantize: bool, u: np.ndarray) -> None:
    """The input scale of every vector, ``peak[b] = max_j |x[b, j]|`` and ``s[b]`` (1 for a vector of zeros),
    and the codes per tile row ``u[k, b, r] = Q(x[b, k R + r] inv_unit / s[b])`` (0 in the padding), ``u`` (K, B, R);
    one read of ``x``."""
    k_tiles, n_b, rows = u.shape
    n_in = x.shape[1]
    for b in range(n_b):
        xb = x[b]
        p = _row_abs_max(xb)
        peak[b] = p
        sb = p if p > 0 else p + 1
        s[b] = sb
        c = inv_unit / sb
        for k in range(k_tiles):
            lo = k * rows
            width = min(n_in, lo + rows) - lo
            xs = xb[lo : lo + width]
            us = u[k, b]
            if quantize:
                for t in range(width):
                    us[t] = np.rint(xs[t] * c)
            else:
                for t in range(width):
                    us[t] = xs[t] * c
            for t in range(width, rows):
                us[t] = 0.0


@vector_kernel
def abs_max_backward(t: np.ndarray, peak: np.ndarray, g: np.ndarray, out: np.ndarray) -> None:
    """Adds the gradient of a row scale ``max_j |t_j|`` (``t`` (n, m)) to ``out``: ``sign(t_j) g / n_ties`` at
    the ties of the row's maximum (as ``torch.amax``); nothing for rows of zeros (their scale is the constant 1).
    Rows whose ``g`` is 0 are skipped."""
    n, m = t.shape
    for i in range(n):
        p = peak[i]
        if p == 0 or g[i] == 0:
            continue
        ts, os_ = t[i], out[i]
        ties = 0
        for j in range(m):
            ties += abs(ts[j]) == p
        share = g[i] / ties
        for j in range(m):
            v = ts[j]
            if abs(v) == p:
                os_[j] += np.sign(v) * share
