"""JIT options for every numba kernel, set in one place.

``cache=True`` stores compiled kernels next to the sources so later runs start fast; ``fastmath`` stays
off so results are reproducible bit for bit and NaN checks are kept; ``parallel`` kernels split work in
fixed chunks so results do not depend on the number of threads.

Threading layer: every MVM alternates OpenBLAS GEMMs with numba kernels. numba's OpenMP layer keeps
its workers spinning after a parallel region, and on a small machine they steal the cores from the
OpenBLAS threads of the next GEMM (measured on 2 cores: the MVM took about twice as long). The
``workqueue`` layer's workers sleep when idle, so it is selected here unless the user chose a layer
with the ``NUMBA_THREADING_LAYER`` environment variable. It must be chosen before numba launches its
first parallel kernel in the process; if another library launched one earlier, numba keeps its layer.
"""

from __future__ import annotations

import os

import numba

__all__ = ["inline_kernel", "kernel", "parallel_kernel", "parallel_vector_kernel", "prange", "vector_kernel"]

if "NUMBA_THREADING_LAYER" not in os.environ:
    numba.config.THREADING_LAYER = "workqueue"

kernel = numba.njit(cache=True, fastmath=False, nogil=True)
"""Decorator for serial kernels."""

parallel_kernel = numba.njit(cache=True, fastmath=False, nogil=True, parallel=True)
"""Decorator for kernels that use ``prange`` over fixed-size chunks."""

inline_kernel = numba.njit(cache=True, fastmath=False, nogil=True, inline="always")
"""Decorator for small helpers called from hot loops (random draws): inlined at numba IR level."""

vector_kernel = numba.njit(cache=True, fastmath=False, nogil=True, error_model="numpy")
"""Serial kernel whose loops must vectorize. ``error_model="numpy"``: a float division by zero gives
inf/NaN as in IEEE-754 instead of raising ``ZeroDivisionError``; the Python model's check is a branch
in every division that stops LLVM's loop vectorizer. Still no ``fastmath``: every result is the IEEE
result, bit for bit. Kernels using it divide only by values that are nonzero by construction."""

parallel_vector_kernel = numba.njit(cache=True, fastmath=False, nogil=True, parallel=True, error_model="numpy")
""":data:`vector_kernel` with ``prange`` over fixed-size chunks."""

prange = numba.prange
