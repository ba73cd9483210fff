"""Make ``irdrop_badcrossbar.npz``: crossbar meshes solved by an independent nodal solver, badcrossbar.

badcrossbar (Joksas & Mehonic, SoftwareX 12, 100617 (2020), doi:10.1016/j.softx.2020.100617; PyPI
``badcrossbar``, version recorded in the file) solves the same mesh as :mod:`crossbar.irdrop`: word
lines driven on the left with one interconnect segment before the first device, bit lines read at the
bottom with one segment after the last device, ideal drivers and virtual ground. It is not a dependency
of this package; to regenerate::

    pip install --target /tmp/bcx badcrossbar pathvalidate   # numpy and scipy come from the env
    PYTHONPATH=/tmp/bcx python tests/golden/make_irdrop_golden.py

The file holds plain arrays only (no pickles).
"""

from __future__ import annotations

import logging
from importlib.metadata import version
from pathlib import Path

import numpy as np
from badcrossbar.compute import compute

logging.disable(logging.INFO)

CASES = [
    # name, rows, cols, r_word (ohm), r_bit (ohm), inputs, seed
    ("small", 4, 5, 2.0, 3.0, 3, 1),
    ("rect", 16, 12, 1.0, 0.5, 4, 2),
    ("strong", 32, 32, 5.0, 5.0, 3, 3),
]


def main() -> None:
    out: dict[str, np.ndarray] = {"badcrossbar_version": np.array(version("badcrossbar"))}
    for name, rows, cols, r_w, r_b, n_in, seed in CASES:
        rng = np.random.default_rng(seed)
        g = rng.uniform(1e-7, 25e-6, (rows, cols))  # S
        v = rng.uniform(-0.2, 0.2, (rows, n_in))  # V, one column per input vector
        sol = compute(v, 1.0 / g, r_i_word_line=r_w, r_i_bit_line=r_b)
        word = np.asarray(sol.voltages.word_line).reshape(rows, cols, n_in)
        bit = np.asarray(sol.voltages.bit_line).reshape(rows, cols, n_in)
        out[f"{name}_g_siemens"] = g
        out[f"{name}_v_volt"] = v.T
        out[f"{name}_r_ohm"] = np.array([r_w, r_b])
        out[f"{name}_current_amp"] = np.asarray(sol.currents.output)
        out[f"{name}_word_volt"] = np.moveaxis(word, 2, 0)
        out[f"{name}_bit_volt"] = np.moveaxis(bit, 2, 0)
    path = Path(__file__).with_name("irdrop_badcrossbar.npz")
    np.savez_compressed(path, **out)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
