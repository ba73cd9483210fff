"""IR drop: the resistor mesh of a crossbar tile, solved by nodal analysis.

A tile is ``R`` word lines (rows, inputs) by ``C`` bit lines (columns, outputs) with a device at every
crossing. The wires are not ideal: each word line is driven at one end by its DAC driver and loses
voltage along its segments; each bit line collects its devices' currents into a virtual-ground sense
amplifier at one end, and rises above ground along its segments. The column currents the periphery sees
are therefore not ``G^T V``. This module solves the mesh exactly:

* :func:`effective_conductances` -- for ohmic devices the mesh is linear, so the column currents are
  ``I = G_eff^T V`` for an effective conductance matrix ``G_eff`` that depends only on the device
  conductances and the wires. It is extracted once per programmed (and time/temperature) state; an
  IR-drop-aware MVM then costs one GEMM.
* :func:`solve_mesh` -- the mesh for given input voltages: node voltages, device voltages, column
  currents, for ohmic or nonlinear devices ``I = G sinh(a V) / a`` (Newton iterations per input).
* :func:`read_noise_variance_scale` -- how fresh per-read device noise reaches the effective matrix.

Notes
-----
**Geometry.** Word line ``j`` is driven with ``V_j`` through the driver resistance ``R_d`` and one wire
segment ``r_w`` into node (j, 0), then segments ``r_w`` between nodes (j, i) and (j, i + 1); its far end
is open. Bit line ``i`` is open at row 0, has segments ``r_b`` between (j, i) and (j + 1, i), and node
(R - 1, i) reaches the amplifier's virtual ground through ``r_b + R_s``. Device (j, i) joins word node
(j, i) and bit node (j, i). There are 2 R C unknown node voltages; Kirchhoff's current law holds at
every node. A partial tile (fewer used rows or columns than the tile has) is simulated as its used
block placed next to the drivers and amplifiers with the unused devices off (0 S), which is the same as
simulating the used block alone.

**Effective matrix (direct, exact).** Eliminating the word line of row k with its bit nodes held at
``w_k`` gives the currents it pushes into those nodes, ``i = J_k V_k - S_k w_k`` with
``S_k = (D_k^-1 + Rw)^-1`` (``D_k = diag(G[k])``, ``Rw[i, m] = R_d + r_w (1 + min(i, m))`` the shared
path resistance from the driver) and ``J_k = S_k 1`` (:func:`crossbar._irdrop_kernels.word_line_admittance`,
O(C^2)). Walking down the bit lines from the open end, the part of the tile above row k is a
C-port with admittance ``X`` and Norton currents ``Jm`` (one column per input). Through the series
segments ``r_b`` it becomes ``X' = (I + r_b X)^-1 X`` and ``Jm' = (I + r_b X)^-1 Jm``; adding row k gives
``X_k = S_k + X'`` and appends ``J_k``. After the last row, ``G_eff^T = (I + (r_b + R_s) X)^-1 Jm``.
Every quantity is on the device-conductance scale (no 1-ohm wire conductance is ever added to a
microsiemens device conductance, which would lose five digits), zero resistances are exact, and
``I + r X`` is symmetric positive definite (Cholesky). Per row one Cholesky factorization and
inversion of ``M = I + r_b X`` (``X' = (I - M^-1) / r_b``, about C^3 flops) on the critical path, and
the Norton update ``M^-1 Jm`` (a symmetric GEMM, about 2 C^2 k flops) pipelined on a second thread:
about ``R C^3 + R^2 C^2`` flops per tile, in single-threaded LAPACK (multithreaded OpenBLAS stalls on
a busy machine); tiles of at most 64 columns run the same recurrence in numba. A sparse LU of the
nodal matrix needs one solve per row on top of its factorization (53 s for 256 x 256 here against
well under 2 s). Measured times: ``benchmarks/bench_irdrop.py``.

**Per-input solve.** With the device currents ``c = G sinh(a dv) / a`` the node voltages follow from
path resistances alone: the word node (j, i) is ``drop = (R_w c)_ji`` below ``V_j`` and the bit node
``rise = (R_b c)_ji`` above ground (cumulative sums along the lines). The unknowns are the R C device
voltages ``dv`` with ``F(dv) = dv - V + R c(dv) = 0``, ``R = R_w + R_b`` symmetric positive
semidefinite. Newton's systems ``(I + R D') delta = -F`` (``D' = dc/dv``) are solved by conjugate
gradients on ``I + s R s``, ``s = sqrt(D')``, whose eigenvalues are >= 1 and cluster at 1 (a few outliers
of size ~ G r N^2, the IR-drop strength), with a backtracking line search. For ``a = 0`` this is the
linear solve.

**Read noise.** Fresh read noise ``dG`` (variance ``var``) per device and per read changes the mesh. To
first order, the dominant effect of device (j, i) is on its own element, scaled by its attenuation
``dG_eff[j, i] / dG[j, i] ~ G_eff[j, i] / G[j, i]`` (its share of the driven voltage times the share of its
current that reaches the amplifier). The chip applies ``var_eff = clip(G_eff / G, 0, 1)^2 var`` to the
effective matrix and keeps the exact per-sample Gaussian output noise of the ideal path. This drops the
cross terms (one device's noise on other columns, and the voltage at a device set by other rows'
currents); ``tests/crossbar/test_irdrop_noise.py`` measures the error of the output-noise variance
against a full re-solve per read with noisy conductances: 8 % on average (2 % for a mixed-sign input,
10-13 % for same-sign inputs, where it over-estimates) on a 32 x 32 tile whose conductances the mesh
lowers by 11 % on average; applying the device variance unscaled would be 36 % off.

References
----------
Chua, L. O. & Lin, P.-M., *Computer-Aided Analysis of Electronic Circuits*, Prentice-Hall (1975):
nodal analysis. Joksas, D. & Mehonic, A., "badcrossbar: A Python tool for computing and plotting
currents and voltages in passive crossbar arrays", SoftwareX 12, 100617 (2020),
doi:10.1016/j.softx.2020.100617: the same mesh. Jiang, Z. et al., "A compact model for metal-oxide
resistive random access memory with experiment verification", IEEE Trans. Electron Devices 63, 1884
(2016), doi:10.1109/TED.2016.2545412: the sinh I-V.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import ctypes
import functools
import os
import queue
import threading
from dataclasses import dataclass
from typing import Any, Iterator

import numpy as np

from crossbar import _irdrop_kernels
from crossbar.config import CircuitConfig

__all__ = ["MeshSolution", "effective_conductances", "effective_conductances_many", "read_noise_variance_scale", "solve_mesh"]

_MAX_CG_ITERATIONS = 2000
"""Cap on conjugate-gradient iterations per Newton step (a safety net; typical counts are 10-40)."""


_SMALL_TILE_COLS = 64
"""Tiles with at most this many columns are extracted entirely in numba: below it the per-row LAPACK
calls cost more in overhead (and, on a busy machine, in BLAS thread hand-offs) than the arithmetic."""


def _find_scipy_openblas_threads() -> object | None:
    """``openblas_set_num_threads_local`` of the OpenBLAS that scipy.linalg calls, or None.

    Multithreaded OpenBLAS hands every call of a (rows x rows) LAPACK routine to its worker threads; on
    a shared 2-core machine a busy core makes those hand-offs stall (measured here: a 256 x 256
    extraction took 42 s with 2 OpenBLAS threads against 1.3 s with 1). The extraction therefore runs
    its LAPACK calls single-threaded (thread-locally, restored afterwards) and gets its parallelism from
    a two-stage pipeline of its own. Without a scipy-bundled OpenBLAS (another BLAS) this is a no-op.
    """
    try:
        with open("/proc/self/maps", encoding="utf-8") as fh:
            paths = {line.split()[-1] for line in fh if "scipy_openblas" in line and "scipy.libs" in line}
    except OSError:
        return None
    for path in sorted(paths):
        try:
            fn = ctypes.CDLL(path).openblas_set_num_threads_local
        except (OSError, AttributeError):
            continue
        fn.restype = ctypes.c_int
        fn.argtypes = [ctypes.c_int]
        return fn
    return None


@functools.lru_cache(maxsize=1)
def _linalg() -> tuple[Any, Any, Any]:
    """scipy's BLAS and LAPACK wrappers and the OpenBLAS thread setter (imported on first use, so that
    ``import crossbar`` stays light)."""
    from scipy.linalg import blas, lapack

    return blas, lapack, _find_scipy_openblas_threads()


_BLAS_LOCK = threading.Lock()
_BLAS_USERS = [0, 0]
"""[threads inside a single-threaded section, OpenBLAS thread count to restore when the last leaves]."""


@contextlib.contextmanager
def _single_threaded_blas() -> Iterator[None]:
    """Run scipy's OpenBLAS single-threaded inside the block (re-entrant and thread-safe).

    ``openblas_set_num_threads_local`` behaves as a process-wide setting in the bundled OpenBLAS
    (measured: two concurrent extractions that each set and restored it left one of them running
    multithreaded), so a reference count restores the old value only when the last user leaves.
    """
    set_threads = _linalg()[2]
    if set_threads is None:
        yield
        return
    with _BLAS_LOCK:
        if _BLAS_USERS[0] == 0:
            _BLAS_USERS[1] = set_threads(1)
        _BLAS_USERS[0] += 1
    try:
        yield
    finally:
        with _BLAS_LOCK:
            _BLAS_USERS[0] -= 1
            if _BLAS_USERS[0] == 0:
                set_threads(_BLAS_USERS[1])


def _check_tile(g: np.ndarray, name: str = "g_siemens") -> np.ndarray:
    arr = np.asarray(g)
    if arr.ndim != 2 or arr.size == 0:
        raise ValueError(f"{name} has shape {arr.shape}; expected a non-empty (rows, cols) conductance matrix")
    if arr.dtype.kind not in "fiu" or arr.dtype.kind == "b":
        raise ValueError(f"{name} has dtype {arr.dtype}; expected real conductances in S")
    arr = np.ascontiguousarray(arr, dtype=np.float64)
    if not np.isfinite(arr).all() or (arr < 0).any():
        raise ValueError(f"{name} must hold finite, non-negative conductances (S)")
    return arr


def _resistances(circuit: CircuitConfig) -> tuple[float, float, float, float]:
    """(r_w, r_in, r_b, r_end) in ohm, the kernels' parameters."""
    if not isinstance(circuit, CircuitConfig):
        raise ValueError(f"circuit must be a CircuitConfig, got {type(circuit).__name__}")
    r_w, r_b = circuit.word_line_segment_ohm, circuit.bit_line_segment_ohm
    return r_w, circuit.driver_ohm + r_w, r_b, circuit.sense_ohm + r_b


def _through_series(x: np.ndarray, jm: np.ndarray, r: float, m: np.ndarray, update_x: bool) -> None:
    """In place: ``jm <- (I + r x)^-1 jm`` and, if ``update_x``, ``x <- (I + r x)^-1 x``.

    ``x`` is symmetric: only its lower triangle is read, unless ``update_x`` (then all of it, and only
    its lower triangle is updated). ``m`` is a (C, C) Fortran-ordered work array.
    """
    blas, lapack, _ = _linalg()
    _irdrop_kernels.shifted(x, r, m)
    chol, info = lapack.dpotrf(m, lower=1, clean=0, overwrite_a=1)
    if info != 0:  # cannot happen for x positive semidefinite; kept as a clear failure
        raise RuntimeError(f"IR-drop extraction: Cholesky of I + r X failed (info={info})")
    if jm.shape[1] > 0:
        sol, info = lapack.dpotrs(chol, jm, lower=1, overwrite_b=1)
        if sol is not jm and not np.shares_memory(sol, jm):
            jm[...] = sol
    if update_x:
        # X' = X - r X (I + r X)^-1 X = X - r Z^T Z with Z = L^-1 X (no cancellation: r X is small).
        z = blas.dtrsm(1.0, chol, x, side=0, lower=1, trans_a=0, diag=0)
        res = blas.dsyrk(-r, z, beta=1.0, c=x, trans=1, lower=1, overwrite_c=1)
        if not np.shares_memory(res, x):
            x[...] = res


def effective_conductances(g_siemens: np.ndarray, circuit: CircuitConfig) -> np.ndarray:
    """Effective conductance matrix of one tile: column currents are ``I = G_eff^T V`` with the mesh.

    Parameters
    ----------
    g_siemens : ndarray, shape (rows, cols)
        Device conductances of the tile, S, in crossbar orientation (row j = word line j driven by input
        j, column i = bit line i read by output i).
    circuit : CircuitConfig
        Wire, driver and sense resistances.

    Returns
    -------
    ndarray, shape (rows, cols)
        ``G_eff`` in S: ``G_eff[j, i]`` is the current into amplifier i per volt on driver j with every
        other driver at 0 V. Equals ``g_siemens`` exactly when every resistance is zero.

    Notes
    -----
    Exact (no iteration) structured elimination, see the module Notes: one pass over the rows with a
    Cholesky factorization of a (cols x cols) matrix per row.
    """
    g = _check_tile(g_siemens)
    r_w, r_in, r_b, r_end = _resistances(circuit)
    n_rows, n_cols = g.shape
    if circuit.is_ideal:
        return g.copy()
    if n_cols <= _SMALL_TILE_COLS:
        out = np.empty_like(g)
        if not _irdrop_kernels.extract_small(g, r_w, r_in, r_b, r_end, out):
            raise RuntimeError("IR-drop extraction: Cholesky of I + r X failed")
        return out
    with _single_threaded_blas():
        # The explicit-inverse update (fewer, faster flops) loses about eps / (r_b G) relative
        # accuracy; used only where that stays below ~1e-8 (r_b G_max >= 1e-8).
        if r_b > 0 and r_b * float(g.max()) >= 1e-8:
            return _extract_pipelined(g, r_w, r_in, r_b, r_end)
        return _extract_serial(g, r_w, r_in, r_b, r_end)


def _extract_pipelined(g: np.ndarray, r_w: float, r_in: float, r_b: float, r_end: float) -> np.ndarray:
    """Three-stage pipeline: a producer eliminates the word lines row by row (S_k, J_k: numba, O(C^2)),
    this thread walks the admittance X down the rows (potrf + potri of I + r_b X: the critical path),
    and a worker applies each step's inverse to the Norton currents ``jm`` (a symmetric GEMM), which X
    never waits for. Every stage does the same arithmetic in the same order whatever the timing."""
    blas, lapack, _ = _linalg()
    n_rows, n_cols = g.shape
    x = np.empty((n_cols, n_cols), order="F")
    jm = np.empty((n_cols, n_rows), order="F")
    steps: queue.Queue = queue.Queue(maxsize=3)
    rows: queue.Queue = queue.Queue(maxsize=2)
    stop = threading.Event()
    failure: list[BaseException] = []

    def eliminate_word_lines() -> None:
        for k in range(n_rows):
            if stop.is_set():
                return
            s_k = np.empty((n_cols, n_cols), order="F")
            j_k = np.empty(n_cols)
            # Only lower triangles of S and X are kept: Cholesky reads no more.
            _irdrop_kernels.word_line_admittance(g[k], r_w, r_in, s_k, j_k, False)
            while not stop.is_set():
                try:
                    rows.put((s_k, j_k), timeout=0.05)
                    break
                except queue.Full:
                    continue

    def apply_inverses() -> None:
        with _single_threaded_blas():
            while True:
                item = steps.get()
                if item is None:
                    return
                if failure:
                    continue
                inv, k = item
                try:
                    jm[:, :k] = blas.dsymm(1.0, inv, jm[:, :k], side=0, lower=1)
                except BaseException as exc:  # re-raised in the calling thread
                    failure.append(exc)

    worker = threading.Thread(target=apply_inverses, name="irdrop-jm", daemon=True)
    producer = threading.Thread(target=eliminate_word_lines, name="irdrop-word", daemon=True)
    worker.start()
    producer.start()
    try:
        for k in range(n_rows):
            s, j = rows.get()
            if k == 0:
                x[...] = s
            else:
                m = np.empty((n_cols, n_cols), order="F")
                _irdrop_kernels.shifted(x, r_b, m)
                chol, info = lapack.dpotrf(m, lower=1, clean=0, overwrite_a=1)
                if info == 0:
                    inv, info = lapack.dpotri(chol, lower=1, overwrite_c=1)
                if info != 0:
                    raise RuntimeError(f"IR-drop extraction: factorization of I + r X failed at row {k} (info={info})")
                _irdrop_kernels.potri_update(inv, r_b, s, x)
                steps.put((inv, k))
            jm[:, k] = j  # column k is not touched by step k, only by steps > k (queued later)
    finally:
        stop.set()
        producer.join()
        steps.put(None)
        worker.join()
    if failure:
        raise failure[0]
    if r_end > 0:
        _through_series(x, jm, r_end, np.empty((n_cols, n_cols), order="F"), update_x=False)
    return np.ascontiguousarray(jm.T)


def _extract_serial(g: np.ndarray, r_w: float, r_in: float, r_b: float, r_end: float) -> np.ndarray:
    """The same recurrence in one thread with the Cholesky/syrk update (no explicit inverse)."""
    n_rows, n_cols = g.shape
    s = np.empty((n_cols, n_cols), order="F")
    j = np.empty(n_cols)
    x = np.empty((n_cols, n_cols), order="F")
    m = np.empty((n_cols, n_cols), order="F")
    jm = np.empty((n_cols, n_rows), order="F")
    for k in range(n_rows):
        _irdrop_kernels.word_line_admittance(g[k], r_w, r_in, s, j)
        if k == 0:
            x[...] = s
        elif r_b > 0:
            _through_series(x, jm[:, :k], r_b, m, update_x=True)
            _irdrop_kernels.symmetrize_add(x, s)
        else:
            x += s
        jm[:, k] = j
    if r_end > 0:
        _through_series(x, jm, r_end, m, update_x=False)
    return np.ascontiguousarray(jm.T)


def effective_conductances_many(blocks: list[np.ndarray], circuit: CircuitConfig) -> list[np.ndarray]:
    """:func:`effective_conductances` of several tiles (e.g. the G+ and G- arrays of every tile).

    Large tiles run two at a time on threads (each extraction is itself a two-thread pipeline whose
    critical path is single-threaded LAPACK); results are identical to one-by-one calls.
    """
    big = [b for b in blocks if np.shape(b)[-1] > _SMALL_TILE_COLS]
    if len(big) < 2 or (os.cpu_count() or 1) < 2:
        return [effective_conductances(b, circuit) for b in blocks]
    with concurrent.futures.ThreadPoolExecutor(max_workers=2, thread_name_prefix="irdrop") as pool:
        return list(pool.map(lambda b: effective_conductances(b, circuit), blocks))


@dataclass(frozen=True, kw_only=True, eq=False)
class MeshSolution:
    """The solved mesh of one tile for a batch of input voltage vectors."""

    word_line_volt: np.ndarray | None
    """Word-line node voltages, shape (batch, rows, cols), V (``None`` unless requested)."""
    bit_line_volt: np.ndarray | None
    """Bit-line node voltages, shape (batch, rows, cols), V (``None`` unless requested)."""
    device_volt: np.ndarray | None
    """Voltage across each device, word minus bit node, shape (batch, rows, cols), V."""
    column_current_amp: np.ndarray
    """Current into each sense amplifier, shape (batch, cols), A."""
    newton_iterations: np.ndarray
    """Newton iterations per input vector, shape (batch,)."""
    residual_rel: np.ndarray
    """Final max |KCL residual| (resistance form, V) / max |V_in| per input vector, shape (batch,)."""


def solve_mesh(
    g_siemens: np.ndarray,
    voltages_volt: np.ndarray,
    circuit: CircuitConfig,
    *,
    sinh_alpha_per_volt: float = 0.0,
    node_voltages: bool = False,
    tile: tuple[int, int] | None = None,
) -> MeshSolution:
    """Solve the mesh of one tile for driven word-line voltages (one Newton solve per input vector).

    Parameters
    ----------
    g_siemens : ndarray, shape (rows, cols)
        Device conductances (small-signal at 0 V for a nonlinear device), S.
    voltages_volt : ndarray, shape (batch, rows) or (rows,)
        Driver voltages, V.
    circuit : CircuitConfig
        Resistances, Newton tolerance and iteration cap.
    sinh_alpha_per_volt : float
        Device nonlinearity a of ``I = G sinh(a V) / a``, 1/V; 0 is ohmic.
    node_voltages : bool
        Also return word-line, bit-line and device voltages (batch x rows x cols each).
    tile : (int, int), optional
        Tile index, only used in error messages.

    Raises
    ------
    RuntimeError
        If an input does not converge within ``circuit.newton_max_iterations``; the message names the
        tile, the input index and the residual.
    """
    g = _check_tile(g_siemens)
    v = np.asarray(voltages_volt, dtype=np.float64)
    squeeze = v.ndim == 1
    v = np.ascontiguousarray(v.reshape(1, -1) if squeeze else v)
    if v.ndim != 2 or v.shape[1] != g.shape[0]:
        raise ValueError(f"voltages_volt has shape {np.shape(voltages_volt)}; expected (batch, {g.shape[0]}) for a tile with {g.shape[0]} rows")
    if not np.isfinite(v).all():
        raise ValueError("voltages_volt contains non-finite values")
    alpha = float(sinh_alpha_per_volt)
    if not np.isfinite(alpha) or alpha < 0:
        raise ValueError(f"sinh_alpha_per_volt = {alpha!r} 1/V must be finite and >= 0")
    r_w, r_in, r_b, r_end = _resistances(circuit)
    n_batch = v.shape[0]
    n_rows, n_cols = g.shape
    dv = np.empty((n_batch, n_rows, n_cols) if node_voltages else (0, 0, 0))
    current = np.empty((n_batch, n_cols))
    status = np.empty((n_batch, 3))
    _irdrop_kernels.solve_inputs(
        g, v, alpha, r_w, r_in, r_b, r_end, circuit.newton_tolerance_rel, circuit.newton_max_iterations,
        _MAX_CG_ITERATIONS, node_voltages, dv, current, status,
    )
    bad = np.flatnonzero(~(status[:, 1] <= circuit.newton_tolerance_rel))
    if bad.size:
        b = int(bad[0])
        where = f"tile {tile}" if tile is not None else "the tile"
        raise RuntimeError(
            f"IR-drop mesh solve of {where} did not converge for input {b}: max KCL residual "
            f"{status[b, 1]:.3g} x max|V| after {int(status[b, 0])} Newton iterations (tolerance "
            f"{circuit.newton_tolerance_rel:g}, cap {circuit.newton_max_iterations}); {bad.size} of {n_batch} inputs failed"
        )
    word = bit = None
    if node_voltages:
        c = np.empty((n_rows, n_cols))
        dc = np.empty((n_rows, n_cols))
        word = np.empty_like(dv)
        bit = np.empty_like(dv)
        drop = np.empty((n_rows, n_cols))
        for b in range(n_batch):
            _irdrop_kernels.device_currents(g, dv[b], alpha, c, dc)
            _irdrop_kernels.path_voltages(c, r_w, r_in, r_b, r_end, drop, bit[b])
            word[b] = v[b][:, None] - drop
    out = MeshSolution(
        word_line_volt=word,
        bit_line_volt=bit,
        device_volt=dv if node_voltages else None,
        column_current_amp=current,
        newton_iterations=status[:, 0].astype(np.int64),
        residual_rel=status[:, 1].copy(),
    )
    return out


def read_noise_variance_scale(g_siemens: np.ndarray, g_eff_siemens: np.ndarray) -> np.ndarray:
    """Factor on each device's fresh read-noise variance seen through the mesh: ``clip(G_eff/G, 0, 1)^2``.

    First-order model of the module Notes ("Read noise"); 1 where ``G = 0`` (whose variance is 0 anyway).
    """
    g = np.asarray(g_siemens, dtype=np.float64)
    ge = np.asarray(g_eff_siemens, dtype=np.float64)
    ratio = np.divide(ge, g, out=np.ones_like(g), where=g > 0)
    return np.clip(ratio, 0.0, 1.0) ** 2
