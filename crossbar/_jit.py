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

The other direction cannot be switched off from here: after a multithreaded GEMM, OpenBLAS's own
workers spin for about 50 ms (measured: 50 ms of a core during a sleep after a 2.7 ms GEMM; only the
environment variable ``OPENBLAS_THREAD_TIMEOUT``, read when NumPy loads OpenBLAS, shortens it, and
setting the thread count does not stop it). The numba kernels that follow a GEMM therefore share a
core with a spinner. With numba's static split of a ``prange`` (one contiguous block per thread) the
thread on that core finished last and the 2-thread epilogue took as long as the 1-thread one; the
hot-path kernels instead let each thread take the next chunk from a shared atomic counter
(:func:`atomic_add`), so the thread on the free core does more chunks (measured: epilogue 2.67 ->
1.47 ms inside the 512 x 512 pipeline). Which thread runs a chunk never changes its result: a chunk's
random stream is fixed by its index. Running the GEMMs single-threaded from a pool of Python threads
instead (no spinner) was tried and dropped: this OpenBLAS build serializes concurrent calls.
"""

from __future__ import annotations

import os

import numba
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

__all__ = ["atomic_add", "inline_kernel", "kernel", "parallel_kernel", "parallel_vector_kernel", "prange", "vector_kernel"]

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


@intrinsic
def atomic_add(typingctx, arr, index, value):  # type: ignore[no-untyped-def]
    """``arr[index] += value`` as one atomic read-modify-write (sequentially consistent); returns the
    old value. For work counters shared by the threads of a parallel loop (no vectorization here)."""
    if not isinstance(arr, types.Array) or arr.ndim != 1 or arr.dtype != types.int64 or not isinstance(index, types.Integer) or not isinstance(value, types.Integer):
        return None

    def codegen(context, builder, sig, args):  # type: ignore[no-untyped-def]
        aryty, idxty, valty = sig.args
        ary = context.make_array(aryty)(context, builder, args[0])
        idx = context.cast(builder, args[1], idxty, types.intp)
        ptr = cgutils.get_item_pointer(context, builder, aryty, ary, [idx], wraparound=False)
        val = context.cast(builder, args[2], valty, types.int64)
        return builder.atomic_rmw("add", ptr, val, "seq_cst")

    return types.int64(arr, index, value), codegen
