"""Tiling: how a weight matrix of any shape is laid out over crossbar tiles.

A weight matrix W (out x in) is stored transposed on the chip: input j drives word line j, output i is
read on bit line i. The (in x out) conductance matrix is cut into blocks of at most ``rows x cols``; the
tile in row-block k and column-block c holds inputs ``row_slice(k)`` and outputs ``col_slice(c)``.
Partial products of the row-blocks are digitized separately and summed digitally.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

__all__ = ["TileGrid"]


@dataclass(frozen=True, kw_only=True)
class TileGrid:
    """The partition of an (in x out) conductance matrix into tiles."""

    in_features: int
    """Number of inputs (rows of the conductance matrix)."""
    out_features: int
    """Number of outputs (columns of the conductance matrix)."""
    rows: int
    """Word lines per tile."""
    cols: int
    """Bit lines per tile."""

    def __post_init__(self) -> None:
        for name in ("in_features", "out_features", "rows", "cols"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"TileGrid.{name} = {value!r} must be a positive integer")

    @property
    def n_row_tiles(self) -> int:
        """Number of tile rows (blocks along the input dimension)."""
        return -(-self.in_features // self.rows)

    @property
    def n_col_tiles(self) -> int:
        """Number of tile columns (blocks along the output dimension)."""
        return -(-self.out_features // self.cols)

    @property
    def n_tiles(self) -> int:
        return self.n_row_tiles * self.n_col_tiles

    def row_slice(self, k: int) -> slice:
        """Inputs held by tile row ``k``."""
        if not 0 <= k < self.n_row_tiles:
            raise IndexError(f"tile row {k} out of range [0, {self.n_row_tiles})")
        return slice(k * self.rows, min((k + 1) * self.rows, self.in_features))

    def col_slice(self, c: int) -> slice:
        """Outputs held by tile column ``c``."""
        if not 0 <= c < self.n_col_tiles:
            raise IndexError(f"tile column {c} out of range [0, {self.n_col_tiles})")
        return slice(c * self.cols, min((c + 1) * self.cols, self.out_features))

    def tiles(self) -> Iterator[tuple[int, int, slice, slice]]:
        """Every tile as ``(k, c, row_slice, col_slice)``, row-major."""
        for k in range(self.n_row_tiles):
            for c in range(self.n_col_tiles):
                yield k, c, self.row_slice(k), self.col_slice(c)
