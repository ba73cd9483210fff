"""Mapping weights to a differential pair of target conductances.

Each weight w is stored on two devices, ``G+ = g_min + s max(w, 0)`` and ``G- = g_min + s max(-w, 0)``,
so that ``G+ - G- = s w``. The scale ``s`` (siemens per weight unit) is chosen per tile or per tile
column so that the largest |w| of the block uses the whole window ``g_max - g_min``; it is undone
digitally after the ADC.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from crossbar.config import ScaleMode
from crossbar.tiling import TileGrid

__all__ = ["ConductanceTargets", "map_weights"]


@dataclass(frozen=True, kw_only=True, eq=False)
class ConductanceTargets:
    """Target conductances of a weight matrix and the scale that maps back to weights."""

    g_target_siemens: np.ndarray
    """Targets, shape (2, in, out): index 0 is the G+ array, 1 the G- array, S."""
    siemens_per_weight: np.ndarray
    """Scale s per (tile row, output), shape (n_row_tiles, out), S per weight unit."""


def map_weights(
    weights: np.ndarray,
    grid: TileGrid,
    *,
    g_min_siemens: float,
    g_max_siemens: float,
    scale_mode: ScaleMode,
) -> ConductanceTargets:
    """Map W (out x in) to differential target conductances on the tile grid.

    Parameters
    ----------
    weights : ndarray, shape (out, in)
        Finite float weights.
    grid : TileGrid
        Tile layout; ``grid.in_features == in`` and ``grid.out_features == out``.
    g_min_siemens, g_max_siemens : float
        Conductance window, S.
    scale_mode : ScaleMode
        One scale per tile, or per column within each tile.

    Returns
    -------
    ConductanceTargets

    Notes
    -----
    For a block B of W^T (rows = inputs) the scale is ``s = (g_max - g_min) / max|B|`` over the tile
    (``PER_TILE``) or over each column of the tile (``PER_COLUMN``). An all-zero block gets
    ``s = g_max - g_min`` (any positive value; its weights are zero).
    """
    w_t = np.asarray(weights, dtype=np.float64).T  # (in, out): crossbar orientation
    g_range = g_max_siemens - g_min_siemens
    scale = np.empty((grid.n_row_tiles, grid.out_features), dtype=np.float64)
    for k, c, rs, cs in grid.tiles():
        block = np.abs(w_t[rs, cs])
        if scale_mode is ScaleMode.PER_TILE:
            peak = np.full(block.shape[1], block.max())
        else:
            peak = block.max(axis=0)
        scale[k, cs] = np.where(peak > 0, g_range / np.where(peak > 0, peak, 1.0), g_range)
    s_rows = np.empty_like(w_t)
    for k in range(grid.n_row_tiles):
        s_rows[grid.row_slice(k)] = scale[k]
    g = np.empty((2,) + w_t.shape, dtype=np.float64)
    g[0] = g_min_siemens + s_rows * np.maximum(w_t, 0.0)
    g[1] = g_min_siemens + s_rows * np.maximum(-w_t, 0.0)
    # Round-off can push a full-scale weight a hair above g_max; the window is a hard device limit.
    np.minimum(g, g_max_siemens, out=g)
    return ConductanceTargets(g_target_siemens=g, siemens_per_weight=scale)
