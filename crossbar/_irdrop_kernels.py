"""Numba kernels of the IR-drop (circuit) stage. Arrays and scalars in, preallocated arrays out.

The public wrappers and the physics are in :mod:`crossbar.irdrop`; the slow reference (a sparse nodal
solve of the whole mesh) is ``tests/crossbar/reference_irdrop.py``.

Geometry shared by every kernel (see :mod:`crossbar.irdrop`, Notes): a tile has ``R`` word lines (rows,
inputs) and ``C`` bit lines (columns, outputs). Word line ``j`` is driven at column 0 through
``r_in = R_driver + r_w`` and has segments ``r_w`` between adjacent cells; bit line ``i`` is open at row 0
and reaches the virtual-ground sense amplifier after row ``R - 1`` through ``r_end = r_b + R_sense``, with
segments ``r_b`` between adjacent cells. Every resistance may be zero.

The kernels work in *resistance form* (path resistances and admittances of the device-conductance scale)
rather than with the nodal matrix, whose wire conductances (~1 S) dwarf the device conductances (~1e-5
S): sums of the two would lose five digits, and a zero resistance would be an infinite conductance.
"""

from __future__ import annotations

import math

import numpy as np

from crossbar._jit import kernel, parallel_kernel, prange

__all__ = ["device_currents", "path_voltages", "solve_inputs", "word_line_admittance"]


@kernel
def word_line_admittance(g: np.ndarray, r_w: float, r_in: float, s_out: np.ndarray, j_out: np.ndarray, full: bool = True) -> None:
    """Admittance of one word line seen from its devices' bit-line ends, and its Norton current.

    With the bit-line node voltages ``w`` held fixed, the currents the word line pushes into the bit
    nodes through its devices are ``i = J V - S w`` for a driver voltage ``V``. With ``Rw[i, k] = r_in +
    r_w min(i, k)`` the path-resistance matrix of the line (driver to node i and to node k share that
    resistance) and ``D = diag(g)``::

        S = (D^-1 + Rw)^-1 = D - D (Rw^-1 + D)^-1 D,   J = S 1.

    ``Rw^-1`` is the tridiagonal chain Laplacian when ``r_w > 0`` (solved column by column with an
    LDL^T factorization, O(C^2)); for ``r_w = 0`` the line is one node and ``S = D - r_in g g^T / (1 +
    r_in sum g)`` (Sherman-Morrison). ``s_out`` (C, C, Fortran order for speed) and ``j_out`` (C,) are
    written; with ``full=False`` only the lower triangle of ``s_out`` (``i >= k``).
    """
    n = g.shape[0]
    if r_w == 0.0:
        denom = 1.0 + r_in * g.sum()
        f = r_in / denom
        for k in range(n):
            for i in range(n):
                s_out[i, k] = -f * g[i] * g[k]
            s_out[k, k] += g[k]
        for i in range(n):
            j_out[i] = g[i] / denom
        return
    gw = 1.0 / r_w
    gin = 1.0 / r_in
    # T = Rw^-1 + D: diagonal a_i, off-diagonal -gw. LDL^T with unit lower bidiagonal l.
    dpiv = np.empty(n)
    low = np.empty(n)  # low[i] multiplies row i-1 (low[0] unused)
    for i in range(n):
        a = g[i] + (gin if i == 0 else gw) + (gw if i < n - 1 else 0.0)
        if i == 0:
            dpiv[i] = a
            low[i] = 0.0
        else:
            low[i] = -gw / dpiv[i - 1]
            dpiv[i] = a + low[i] * gw  # a - gw^2 / d_{i-1}
    inv_piv = np.empty(n)
    for i in range(n):
        inv_piv[i] = 1.0 / dpiv[i]
    x = np.empty(n)
    for i in range(n):
        j_out[i] = 0.0
    for k in range(n):
        # x = T^-1 e_k for rows i >= k (the lower triangle; S is symmetric): forward L y = e_k
        # (y_i = 0 for i < k), z = y / d, back L^T x = z from the last row down to row k.
        y = 1.0
        x[k] = inv_piv[k]
        for i in range(k + 1, n):
            y = -low[i] * y
            x[i] = y * inv_piv[i]
        for i in range(n - 2, k - 1, -1):
            x[i] -= low[i + 1] * x[i + 1]
        gk = g[k]
        acc = 0.0
        for i in range(k, n):  # column k of the lower triangle: contiguous in Fortran order
            val = -g[i] * x[i] * gk
            s_out[i, k] = val
            acc += val
        s_out[k, k] += gk
        # J = S 1 from the lower triangle: S_ik (i >= k) adds to J_i, and for i > k also to J_k.
        j_out[k] += acc + gk
        for i in range(k + 1, n):
            j_out[i] += s_out[i, k]
    if full:
        for k in range(n):
            for i in range(k + 1, n):
                s_out[k, i] = s_out[i, k]


@kernel
def path_voltages(c: np.ndarray, r_w: float, r_in: float, r_b: float, r_end: float, drop: np.ndarray, rise: np.ndarray) -> None:
    """Word-line voltage drops and bit-line voltage rises caused by device currents ``c`` (R, C), A.

    Every device current flows from its word line's driver, along the word line, through the device,
    along its bit line into the sense amplifier. So the word-line node (j, i) sits ``drop[j, i] =
    r_in T_j0 + r_w sum_{m=1..i} T_jm`` below the driver voltage, with ``T_jm = sum_{i' >= m} c[j, i']``
    the current in segment m, and the bit-line node (j, i) ``rise[j, i] = r_end H_{R-1,i} + r_b
    sum_{m=j..R-2} H_mi`` above virtual ground, with ``H_mi = sum_{j' <= m} c[j', i]``.
    """
    n_rows, n_cols = c.shape
    for j in range(n_rows):
        tail = 0.0
        for i in range(n_cols - 1, -1, -1):
            tail += c[j, i]
            rise[j, i] = tail  # scratch: segment current T_ji
        acc = r_in * rise[j, 0]
        drop[j, 0] = acc
        for i in range(1, n_cols):
            acc += r_w * rise[j, i]
            drop[j, i] = acc
    # Bit lines, row by row so that the inner loops run over contiguous columns.
    for i in range(n_cols):
        rise[0, i] = c[0, i]  # scratch: H_ji, the current below row j
    for j in range(1, n_rows):
        for i in range(n_cols):
            rise[j, i] = rise[j - 1, i] + c[j, i]
    last = n_rows - 1
    for i in range(n_cols):
        rise[last, i] = r_end * rise[last, i]
    for j in range(n_rows - 2, -1, -1):
        for i in range(n_cols):
            rise[j, i] = rise[j + 1, i] + r_b * rise[j, i]


@kernel
def device_currents(g: np.ndarray, dv: np.ndarray, alpha: float, c: np.ndarray, dc: np.ndarray) -> None:
    """``c = g sinh(alpha dv) / alpha`` (``g dv`` for alpha = 0) and its derivative ``dc`` (S)."""
    n_rows, n_cols = g.shape
    if alpha == 0.0:
        for j in range(n_rows):
            for i in range(n_cols):
                c[j, i] = g[j, i] * dv[j, i]
                dc[j, i] = g[j, i]
        return
    inv_alpha = 1.0 / alpha
    for j in range(n_rows):
        for i in range(n_cols):
            x = alpha * dv[j, i]
            if abs(x) < 1e-3:  # Taylor: exact to double precision here, no cancellation
                x2 = x * x
                sh = x * (1.0 + x2 * (1.0 / 6.0 + x2 * (1.0 / 120.0)))
                ch = 1.0 + x2 * (0.5 + x2 * (1.0 / 24.0))
            else:  # one exp instead of sinh and cosh
                e = math.exp(x)
                ei = 1.0 / e
                sh = 0.5 * (e - ei)
                ch = 0.5 * (e + ei)
            c[j, i] = g[j, i] * sh * inv_alpha
            dc[j, i] = g[j, i] * ch


@kernel
def _residual(g, v_row, dv, alpha, r_w, r_in, r_b, r_end, c, dc, drop, rise, f) -> float:
    """Resistance-form KCL residual ``F = dv - V + drop + rise`` (V); returns max |F|."""
    device_currents(g, dv, alpha, c, dc)
    path_voltages(c, r_w, r_in, r_b, r_end, drop, rise)
    n_rows, n_cols = g.shape
    worst = 0.0
    for j in range(n_rows):
        for i in range(n_cols):
            val = dv[j, i] - v_row[j] + drop[j, i] + rise[j, i]
            f[j, i] = val
            if abs(val) > worst:
                worst = abs(val)
    return worst


@kernel
def _solve_one(g, v_row, alpha, r_w, r_in, r_b, r_end, tol_volt, max_newton, max_cg, dv, status) -> None:
    """Newton iterations for one input vector; ``dv`` (R, C) holds the device voltages on return.

    ``status`` gets [Newton iterations, final max |F| (V), total CG iterations].
    """
    n_rows, n_cols = g.shape
    c = np.empty((n_rows, n_cols))
    dc = np.empty((n_rows, n_cols))
    drop = np.empty((n_rows, n_cols))
    rise = np.empty((n_rows, n_cols))
    f = np.empty((n_rows, n_cols))
    s = np.empty((n_rows, n_cols))
    y = np.empty((n_rows, n_cols))
    r = np.empty((n_rows, n_cols))
    p = np.empty((n_rows, n_cols))
    q = np.empty((n_rows, n_cols))
    t = np.empty((n_rows, n_cols))
    trial = np.empty((n_rows, n_cols))
    for j in range(n_rows):
        for i in range(n_cols):
            dv[j, i] = v_row[j]
    worst = _residual(g, v_row, dv, alpha, r_w, r_in, r_b, r_end, c, dc, drop, rise, f)
    it = 0
    cg_total = 0
    prev_worst = worst
    while worst > tol_volt and it < max_newton:
        it += 1
        # Newton step: (I + R D') delta = -F, D' = dc. Symmetrized with s = sqrt(D'):
        # (I + s R s) y = -s F, then delta = -F - R (s y). CG from y = 0.
        rr = 0.0
        bnorm = 0.0
        for j in range(n_rows):
            for i in range(n_cols):
                sv = math.sqrt(dc[j, i])
                s[j, i] = sv
                b = -sv * f[j, i]
                y[j, i] = 0.0
                r[j, i] = b
                p[j, i] = b
                rr += b * b
                bnorm += b * b
        # Forcing term (inexact Newton, Eisenstat & Walker 1996, choice 2): a loose linear solve while
        # the nonlinearity dominates the residual, tighter as Newton converges; one tight solve for
        # an ohmic device, where Newton is exact in one step.
        if alpha == 0.0:
            eta = min(1e-3, 0.1 * tol_volt / worst)
        elif it == 1:
            eta = 1e-2
        else:
            eta = min(1e-2, max(0.9 * (worst / prev_worst) ** 2, 0.1 * tol_volt / worst))
        prev_worst = worst
        stop = eta * eta * bnorm
        k = 0
        while rr > stop and k < max_cg:
            k += 1
            for j in range(n_rows):
                for i in range(n_cols):
                    t[j, i] = s[j, i] * p[j, i]
            path_voltages(t, r_w, r_in, r_b, r_end, drop, rise)
            pq = 0.0
            for j in range(n_rows):
                for i in range(n_cols):
                    val = p[j, i] + s[j, i] * (drop[j, i] + rise[j, i])
                    q[j, i] = val
                    pq += p[j, i] * val
            a = rr / pq
            rr_new = 0.0
            for j in range(n_rows):
                for i in range(n_cols):
                    y[j, i] += a * p[j, i]
                    r[j, i] -= a * q[j, i]
                    rr_new += r[j, i] * r[j, i]
            beta = rr_new / rr
            rr = rr_new
            for j in range(n_rows):
                for i in range(n_cols):
                    p[j, i] = r[j, i] + beta * p[j, i]
        cg_total += k
        # delta = -F - R (s y), stored in t; backtracking on max |F|.
        for j in range(n_rows):
            for i in range(n_cols):
                q[j, i] = s[j, i] * y[j, i]
        path_voltages(q, r_w, r_in, r_b, r_end, drop, rise)
        for j in range(n_rows):
            for i in range(n_cols):
                t[j, i] = -f[j, i] - drop[j, i] - rise[j, i]
        step = 1.0
        for _ in range(30):
            for j in range(n_rows):
                for i in range(n_cols):
                    trial[j, i] = dv[j, i] + step * t[j, i]
            new_worst = _residual(g, v_row, trial, alpha, r_w, r_in, r_b, r_end, c, dc, drop, rise, f)
            if new_worst < worst or new_worst <= tol_volt:
                break
            step *= 0.5
        for j in range(n_rows):
            for i in range(n_cols):
                dv[j, i] = trial[j, i]
        if not new_worst < worst and new_worst > tol_volt:
            worst = new_worst
            break  # no descent even for a tiny step: report non-convergence
        worst = new_worst
    status[0] = it
    status[1] = worst
    status[2] = cg_total


@parallel_kernel
def solve_inputs(
    g: np.ndarray,
    v_in: np.ndarray,
    alpha: float,
    r_w: float,
    r_in: float,
    r_b: float,
    r_end: float,
    tol_rel: float,
    max_newton: int,
    max_cg: int,
    keep_voltages: bool,
    dv_out: np.ndarray,
    current_out: np.ndarray,
    status: np.ndarray,
) -> None:
    """Solve the mesh of one tile for a batch of driven word-line voltages ``v_in`` (B, R), V.

    Unknowns are the device voltages ``dv`` (R, C); the mesh equations in resistance form are
    ``F(dv) = dv - V + drop(c(dv)) + rise(c(dv)) = 0`` (:func:`path_voltages`), with device currents
    ``c = g sinh(alpha dv) / alpha``. Newton's linear systems ``(I + R D') delta = -F`` are solved by
    conjugate gradients on the symmetric positive definite ``I + s R s`` (``s = sqrt(D')``, eigenvalues
    >= 1), each product one pass of cumulative sums along the lines. Stops when ``max |F| <= tol_rel
    max |V|``. Writes the column currents (B, C) in A, ``dv_out`` (B, R, C) when ``keep_voltages``, and
    ``status`` (B, 3) = [Newton iterations, final max |F| / max |V|, CG iterations].
    """
    n_batch = v_in.shape[0]
    n_rows, n_cols = g.shape
    for b in prange(n_batch):
        vmax = 0.0
        for j in range(n_rows):
            vmax = max(vmax, abs(v_in[b, j]))
        dv = np.zeros((n_rows, n_cols))
        st = np.zeros(3)
        if vmax > 0.0:
            _solve_one(g, v_in[b], alpha, r_w, r_in, r_b, r_end, tol_rel * vmax, max_newton, max_cg, dv, st)
            st[1] /= vmax
        status[b, 0] = st[0]
        status[b, 1] = st[1]
        status[b, 2] = st[2]
        for i in range(n_cols):
            current_out[b, i] = 0.0
        if alpha == 0.0:
            for j in range(n_rows):
                for i in range(n_cols):
                    current_out[b, i] += g[j, i] * dv[j, i]
        else:
            for j in range(n_rows):
                for i in range(n_cols):
                    current_out[b, i] += g[j, i] * math.sinh(alpha * dv[j, i]) / alpha
        if keep_voltages:
            for j in range(n_rows):
                for i in range(n_cols):
                    dv_out[b, j, i] = dv[j, i]


@kernel
def symmetrize_add(x: np.ndarray, s: np.ndarray) -> None:
    """``x = sym(lower(x)) + s`` in place: mirror x's lower triangle to the upper one, then add s."""
    n = x.shape[0]
    for k in range(n):
        for i in range(k + 1, n):
            x[k, i] = x[i, k]
    for k in range(n):
        for i in range(n):
            x[i, k] += s[i, k]


@kernel
def shifted(x: np.ndarray, r: float, m: np.ndarray) -> None:
    """Lower triangle of ``m = I + r x`` (all that Cholesky reads; Fortran-ordered arrays)."""
    n = x.shape[0]
    for k in range(n):
        for i in range(k, n):
            m[i, k] = r * x[i, k]
        m[k, k] += 1.0


@kernel
def potri_update(inv: np.ndarray, r: float, s: np.ndarray, x: np.ndarray) -> None:
    """Lower triangle of ``x = (I - inv) / r + s``: the admittance through a series r from the lower
    triangle of M^-1 = (I + r X)^-1 (Fortran-ordered arrays: contiguous columns)."""
    n = inv.shape[0]
    f = 1.0 / r
    for k in range(n):
        for i in range(k, n):
            x[i, k] = s[i, k] - inv[i, k] * f
        x[k, k] += f


@kernel
def _cholesky_lower(m: np.ndarray) -> bool:
    """In-place Cholesky ``m = L L^T`` (lower triangle of ``m`` becomes L); False if not positive definite."""
    n = m.shape[0]
    for i in range(n):
        for j in range(i + 1):
            acc = m[i, j]
            for p in range(j):
                acc -= m[i, p] * m[j, p]
            if i == j:
                if acc <= 0.0:
                    return False
                m[i, i] = math.sqrt(acc)
            else:
                m[i, j] = acc / m[j, j]
    return True


@kernel
def _solve_lower(l: np.ndarray, b: np.ndarray, n_cols: int) -> None:
    """``b[:, :n_cols] <- L^-1 b[:, :n_cols]`` (row-major, vectorized over columns)."""
    n = l.shape[0]
    for i in range(n):
        for p in range(i):
            f = l[i, p]
            for q in range(n_cols):
                b[i, q] -= f * b[p, q]
        inv = 1.0 / l[i, i]
        for q in range(n_cols):
            b[i, q] *= inv


@kernel
def _solve_upper(l: np.ndarray, b: np.ndarray, n_cols: int) -> None:
    """``b[:, :n_cols] <- L^-T b[:, :n_cols]``."""
    n = l.shape[0]
    for i in range(n - 1, -1, -1):
        for p in range(i + 1, n):
            f = l[p, i]
            for q in range(n_cols):
                b[i, q] -= f * b[p, q]
        inv = 1.0 / l[i, i]
        for q in range(n_cols):
            b[i, q] *= inv


@kernel
def _through_series_small(x: np.ndarray, jm: np.ndarray, n_jm: int, r: float, l: np.ndarray, z: np.ndarray, update_x: bool) -> bool:
    """Numba twin of :func:`crossbar.irdrop._through_series` for small tiles (no LAPACK call overhead)."""
    n = x.shape[0]
    for i in range(n):
        for k in range(n):
            l[i, k] = r * x[i, k]
        l[i, i] += 1.0
    if not _cholesky_lower(l):
        return False
    if n_jm > 0:
        _solve_lower(l, jm, n_jm)
        _solve_upper(l, jm, n_jm)
    if update_x:
        for i in range(n):
            for k in range(n):
                z[i, k] = x[i, k]
        _solve_lower(l, z, n)  # Z = L^-1 X
        for p in range(n):  # X <- X - r Z^T Z
            for a in range(n):
                f = r * z[p, a]
                for b in range(n):
                    x[a, b] -= f * z[p, b]
    return True


@kernel
def extract_small(g: np.ndarray, r_w: float, r_in: float, r_b: float, r_end: float, out: np.ndarray) -> bool:
    """The exact effective-matrix extraction of :func:`crossbar.irdrop.effective_conductances`, all in
    numba (Cholesky/syrk form) for tiles small enough that LAPACK call overhead dominates.
    Writes ``out`` (R, C); returns False if a Cholesky factorization failed."""
    n_rows, n_cols = g.shape
    s = np.empty((n_cols, n_cols))
    jv = np.empty(n_cols)
    x = np.empty((n_cols, n_cols))
    l = np.empty((n_cols, n_cols))
    z = np.empty((n_cols, n_cols))
    jm = np.empty((n_cols, n_rows))
    for k in range(n_rows):
        word_line_admittance(g[k], r_w, r_in, s, jv)
        if k > 0 and r_b > 0.0:
            if not _through_series_small(x, jm, k, r_b, l, z, True):
                return False
        if k == 0:
            for i in range(n_cols):
                for q in range(n_cols):
                    x[i, q] = s[i, q]
        else:
            for i in range(n_cols):
                for q in range(n_cols):
                    x[i, q] += s[i, q]
        for i in range(n_cols):
            jm[i, k] = jv[i]
    if r_end > 0.0:
        if not _through_series_small(x, jm, n_rows, r_end, l, z, False):
            return False
    for j in range(n_rows):
        for i in range(n_cols):
            out[j, i] = jm[i, j]
    return True
