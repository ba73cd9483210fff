"""Thread-pool settings for sharing few cores between NumPy's OpenBLAS, torch's OpenMP and numba.

The chip's MVM interleaves OpenBLAS GEMMs, numba kernels and (in ``crossbar.nn``) torch operations. By
default OpenBLAS's worker threads spin for about 0.1 s after every GEMM, and the GNU OpenMP threads of
torch spin after every parallel torch operation; on a machine with few cores the spinning threads take
the cores the next stage needs. Measured on 2 cores (``python -m benchmarks``, same machine, same run
settings): the analog 784-300-300-10 MLP forward went from 7.2x to 3.4x its digital torch model, its
forward + backward from 6.9x to 1.7x, the surrogate's 512 x 512 forward from 2.1x to 1.5x ``nn.Linear``,
when the two pools were told to sleep right after their work:

* ``OPENBLAS_THREAD_TIMEOUT=4`` (OpenBLAS: spin 2^4 cycles before sleeping),
* ``OMP_WAIT_POLICY=PASSIVE`` (GNU/LLVM OpenMP: sleep at once).

Both are read once, when the libraries load, so they can only take effect before NumPy (OpenBLAS) or
torch (OpenMP) is first imported. Importing :mod:`crossbar` (or ``training``, ``benchmarks``, the
``crossbar`` command) sets each with :func:`os.environ.setdefault` when its library is not loaded yet:
a value you set yourself always wins, and ``CROSSBAR_KEEP_THREAD_ENV=1`` leaves the environment alone.
This module must not import NumPy or torch.
"""

from __future__ import annotations

import os
import sys

#: Variable -> (value set, module whose import reads it).
SETTINGS: dict[str, tuple[str, str]] = {
    "OPENBLAS_THREAD_TIMEOUT": ("4", "numpy"),
    "OMP_WAIT_POLICY": ("PASSIVE", "torch"),
}


def apply() -> dict[str, str]:
    """Set the variables whose library is not imported yet; return the ones set by this call."""
    if os.environ.get("CROSSBAR_KEEP_THREAD_ENV", "") not in ("", "0"):
        return {}
    done: dict[str, str] = {}
    for name, (value, module) in SETTINGS.items():
        if module not in sys.modules and name not in os.environ:
            os.environ[name] = value
            done[name] = value
    return done


APPLIED = apply()
