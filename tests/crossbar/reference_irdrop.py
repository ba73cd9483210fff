"""Slow, obvious reference of the IR-drop stage: the sparse nodal system of the whole tile mesh.

Every node of the 2 x rows x cols mesh is an unknown; every wire segment, driver, sense resistance and
device is a conductance stamped into the nodal matrix; scipy's sparse LU solves it. Written for reading:
one loop over the mesh, one stamp per element, the geometry of :mod:`crossbar.irdrop` (Notes) spelled out.
Nonlinear devices: Newton iterations with the same sparse solve. Needs every resistance > 0 (a zero
resistance is an infinite conductance; the fast solver handles it, this reference does not).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla

from crossbar.config import CircuitConfig


@dataclass
class Mesh:
    """Node numbering and the linear (wire) part of the nodal matrix."""

    rows: int
    cols: int
    wires: sp.csr_matrix
    """Stamps of every wire segment, driver and sense resistance (drivers and sense to ground)."""
    g_driver: float
    """Conductance from each driver to its first word-line node, S."""
    g_sense: float
    """Conductance from each bit line's last node to virtual ground, S."""

    def word(self, j: int, i: int) -> int:
        return j * self.cols + i

    def bit(self, j: int, i: int) -> int:
        return self.rows * self.cols + j * self.cols + i

    @property
    def n_nodes(self) -> int:
        return 2 * self.rows * self.cols


def build_mesh(rows: int, cols: int, circuit: CircuitConfig) -> Mesh:
    r_w, r_b = circuit.word_line_segment_ohm, circuit.bit_line_segment_ohm
    r_in, r_end = circuit.driver_ohm + r_w, circuit.sense_ohm + r_b
    if min(r_w, r_b, r_in, r_end) <= 0:
        raise ValueError("the reference needs every wire resistance > 0")
    mesh = Mesh(rows, cols, sp.csr_matrix((1, 1)), 1.0 / r_in, 1.0 / r_end)
    entries: tuple[list[int], list[int], list[float]] = ([], [], [])

    def stamp(p: int, q: int | None, g: float) -> None:  # conductance g between node p and q (None: ground)
        r, c, v = entries
        r.append(p), c.append(p), v.append(g)
        if q is not None:
            r.extend((q, p, q)), c.extend((q, q, p)), v.extend((g, -g, -g))

    for j in range(rows):
        stamp(mesh.word(j, 0), None, mesh.g_driver)  # the driver is a voltage source: its node is "ground" + V_j
        for i in range(cols - 1):
            stamp(mesh.word(j, i), mesh.word(j, i + 1), 1.0 / r_w)
    for i in range(cols):
        for j in range(rows - 1):
            stamp(mesh.bit(j, i), mesh.bit(j + 1, i), 1.0 / r_b)
        stamp(mesh.bit(rows - 1, i), None, mesh.g_sense)  # virtual ground at 0 V
    mesh.wires = sp.coo_matrix((entries[2], (entries[0], entries[1])), shape=(mesh.n_nodes, mesh.n_nodes)).tocsr()  # duplicates add
    return mesh


def _device_matrix(mesh: Mesh, g: np.ndarray) -> sp.csr_matrix:
    rows, cols = mesh.rows, mesh.cols
    n = rows * cols
    idx = np.arange(n)
    gv = g.ravel()
    return sp.csr_matrix(
        (np.concatenate([gv, gv, -gv, -gv]), (np.concatenate([idx, idx + n, idx, idx + n]), np.concatenate([idx, idx + n, idx + n, idx]))),
        shape=(2 * n, 2 * n),
    )


def _source(mesh: Mesh, v: np.ndarray) -> np.ndarray:
    """Current injected by the drivers (Norton form of V_j through g_driver), A; v shape (rows, batch)."""
    b = np.zeros((mesh.n_nodes, v.shape[1]))
    for j in range(mesh.rows):
        b[mesh.word(j, 0)] = mesh.g_driver * v[j]
    return b


def node_voltages(g: np.ndarray, v: np.ndarray, circuit: CircuitConfig) -> tuple[np.ndarray, np.ndarray]:
    """Linear mesh: word and bit node voltages (batch, rows, cols) for driver voltages v (batch, rows)."""
    rows, cols = g.shape
    mesh = build_mesh(rows, cols, circuit)
    a = (mesh.wires + _device_matrix(mesh, g)).tocsc()
    x = spla.splu(a).solve(_source(mesh, np.atleast_2d(v).T))
    n = rows * cols
    return x[:n].T.reshape(-1, rows, cols), x[n:].T.reshape(-1, rows, cols)


def column_currents(g: np.ndarray, v: np.ndarray, circuit: CircuitConfig) -> np.ndarray:
    """Linear mesh: current into each sense amplifier (batch, cols) for driver voltages v (batch, rows)."""
    _, bit = node_voltages(g, v, circuit)
    mesh = build_mesh(*g.shape, circuit)
    return mesh.g_sense * bit[:, -1, :]


def effective_conductances(g: np.ndarray, circuit: CircuitConfig) -> np.ndarray:
    """G_eff[j, i]: current into amplifier i per volt on driver j alone (one sparse solve, rows RHS)."""
    return column_currents(g, np.eye(g.shape[0]), circuit)


def kcl_residual(g: np.ndarray, v: np.ndarray, word: np.ndarray, bit: np.ndarray, circuit: CircuitConfig, alpha: float = 0.0) -> np.ndarray:
    """Net current into every node (2 R C,) for one input, computed element by element, A."""
    rows, cols = g.shape
    mesh = build_mesh(rows, cols, circuit)
    r_w, r_b = circuit.word_line_segment_ohm, circuit.bit_line_segment_ohm
    net = np.zeros(mesh.n_nodes)
    for j in range(rows):
        net[mesh.word(j, 0)] += mesh.g_driver * (v[j] - word[j, 0])
        for i in range(cols):
            dv = word[j, i] - bit[j, i]
            i_dev = g[j, i] * (np.sinh(alpha * dv) / alpha if alpha > 0 else dv)
            net[mesh.word(j, i)] -= i_dev
            net[mesh.bit(j, i)] += i_dev
            if i + 1 < cols:
                s = (word[j, i] - word[j, i + 1]) / r_w
                net[mesh.word(j, i)] -= s
                net[mesh.word(j, i + 1)] += s
            if j + 1 < rows:
                s = (bit[j, i] - bit[j + 1, i]) / r_b
                net[mesh.bit(j, i)] -= s
                net[mesh.bit(j + 1, i)] += s
    for i in range(cols):
        net[mesh.bit(rows - 1, i)] -= mesh.g_sense * bit[rows - 1, i]
    return net


def solve_nonlinear(g: np.ndarray, v: np.ndarray, circuit: CircuitConfig, alpha: float, tol_volt: float = 1e-14, max_iter: int = 60) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Devices I = G sinh(a dV) / a: Newton on the full nodal system, one input v (rows,), until the
    Newton update is below ``tol_volt`` (V).

    Returns word and bit node voltages (rows, cols) and the column currents (cols,).
    """
    rows, cols = g.shape
    mesh = build_mesh(rows, cols, circuit)
    n = rows * cols
    src = _source(mesh, v.reshape(-1, 1))[:, 0]
    x = spla.splu((mesh.wires + _device_matrix(mesh, g)).tocsc()).solve(src)  # the linear solution
    for _ in range(max_iter):
        dv = x[:n] - x[n:]
        i_dev = g.ravel() * np.sinh(alpha * dv) / alpha
        f = mesh.wires @ x - src
        f[:n] += i_dev
        f[n:] -= i_dev
        jac = mesh.wires + _device_matrix(mesh, (g.ravel() * np.cosh(alpha * dv)).reshape(rows, cols))
        step = spla.splu(jac.tocsc()).solve(f)
        x = x - step
        if np.abs(step).max() <= tol_volt:
            break
    else:
        raise RuntimeError("reference Newton did not converge")
    word, bit = x[:n].reshape(rows, cols), x[n:].reshape(rows, cols)
    return word, bit, mesh.g_sense * bit[-1]
