"""Datasets from files in their standard formats, and the embedded MNIST subset.

* MNIST and Fashion-MNIST: the four IDX files with their standard names (``train-images-idx3-ubyte``,
  ``train-labels-idx1-ubyte``, ``t10k-images-idx3-ubyte``, ``t10k-labels-idx1-ubyte``), each gzipped
  (``.gz``) or not, in a directory the user names.
* CIFAR-10: the "python version" batches ``data_batch_1`` ... ``data_batch_5`` and ``test_batch`` (the
  directory itself or its ``cifar-10-batches-py`` child).
* The embedded default: a class-balanced 10 000 + 2 000 subset of the real MNIST shipped in the package
  (``training/data/mnist_subset``, made by ``training/data/make_subset.py``), so the main job needs no
  download.

Images come back as float32 tensors in [0, 1] of shape (N, C, H, W) and labels as int64. A directory
missing a file gives a one-line ``FileNotFoundError`` naming the file.

CIFAR-10 batches are Python pickles (a dict with ``b'data'``, a uint8 numpy array N x 3072, and
``b'labels'``, a list of ints). Unpickling can run arbitrary code, so :func:`load_cifar10` uses a
restricted unpickler whose ``find_class`` resolves only the handful of names such a batch refers to
(numpy's array and dtype reconstructors, ``_codecs.encode`` for protocol-2 bytes), and maps each to a
small stand-in defined here that only records shape, dtype and raw bytes. numpy's own reconstruction code
is never called; any other global (``os.system``, ``builtins.eval``, ...) is refused.

References
----------
Y. LeCun, L. Bottou, Y. Bengio and P. Haffner, "Gradient-based learning applied to document recognition",
Proc. IEEE 86(11), 2278-2324 (1998), doi:10.1109/5.726791 (MNIST; IDX format). MNIST is available under
CC BY-SA 3.0.
H. Xiao, K. Rasul and R. Vollgraf, "Fashion-MNIST", arXiv:1708.07747 (2017), doi:10.48550/arXiv.1708.07747.
A. Krizhevsky, "Learning multiple layers of features from tiny images", tech. report, U. Toronto (2009)
(CIFAR-10).
"""

from __future__ import annotations

import gzip
import io
import os
import pickle
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

__all__ = [
    "CIFAR10_FILES",
    "MNIST_FILES",
    "Dataset",
    "DatasetSplits",
    "load_cifar10",
    "load_embedded_mnist",
    "load_fashion_mnist",
    "load_mnist",
    "read_idx",
    "write_idx",
]

MNIST_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)
"""Standard MNIST / Fashion-MNIST file names (each may also end in ``.gz``)."""

CIFAR10_FILES = ("data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5", "test_batch")
"""The CIFAR-10 python-version batch files."""

_IDX_TYPES = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_GZIP_MAGIC = b"\x1f\x8b"


class _Readable(Protocol):
    def read_bytes(self) -> bytes: ...


@dataclass(frozen=True, eq=False)
class Dataset:
    """Images and labels of one split."""

    images: torch.Tensor
    """float32, shape (N, C, H, W), values in [0, 1]."""
    labels: torch.Tensor
    """int64, shape (N,), values in [0, n_classes)."""
    n_classes: int
    """Number of classes."""
    name: str
    """Human-readable origin, e.g. ``"MNIST train (/data/mnist)"``."""

    def __post_init__(self) -> None:
        if not isinstance(self.images, torch.Tensor) or self.images.dim() != 4:
            raise ValueError("Dataset.images must be a 4-d tensor (N, C, H, W)")
        if self.images.dtype != torch.float32:
            raise ValueError(f"Dataset.images must be float32, got {self.images.dtype}")
        if not isinstance(self.labels, torch.Tensor) or self.labels.dtype != torch.int64 or self.labels.dim() != 1:
            raise ValueError("Dataset.labels must be a 1-d int64 tensor")
        if self.labels.shape[0] != self.images.shape[0]:
            raise ValueError(f"Dataset has {self.images.shape[0]} images but {self.labels.shape[0]} labels")
        if isinstance(self.n_classes, bool) or not isinstance(self.n_classes, int) or self.n_classes < 2:
            raise ValueError(f"Dataset.n_classes = {self.n_classes!r} must be an integer >= 2")
        if self.labels.numel() and (int(self.labels.min()) < 0 or int(self.labels.max()) >= self.n_classes):
            raise ValueError(f"Dataset.labels must lie in [0, {self.n_classes})")

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def subset(self, indices: torch.Tensor | slice) -> Dataset:
        """The samples at ``indices`` (a slice or an index tensor)."""
        return Dataset(
            images=self.images[indices], labels=self.labels[indices], n_classes=self.n_classes, name=self.name
        )


@dataclass(frozen=True, eq=False)
class DatasetSplits:
    """A training and a test split."""

    train: Dataset
    test: Dataset


# --------------------------------------------------------------------------------------------------
# IDX
# --------------------------------------------------------------------------------------------------


def _read_bytes(source: str | os.PathLike[str] | _Readable) -> bytes:
    if isinstance(source, (str, os.PathLike)):
        return Path(source).read_bytes()
    return source.read_bytes()


def read_idx(source: str | os.PathLike[str] | _Readable) -> np.ndarray:
    """Read one IDX file (gzipped or not; detected from its first bytes, not its name).

    Parameters
    ----------
    source : path or an object with ``read_bytes()`` (e.g. an ``importlib.resources`` traversable)

    Returns
    -------
    numpy.ndarray
        The array in native byte order, with the file's shape and element type.

    Notes
    -----
    IDX layout: two zero bytes, a type code (0x08 uint8, 0x09 int8, 0x0B int16, 0x0C int32, 0x0D float32,
    0x0E float64), the number of dimensions, one big-endian uint32 per dimension, then the data in
    big-endian C order.
    """
    raw = _read_bytes(source)
    if raw[:2] == _GZIP_MAGIC:
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as exc:
            raise ValueError(f"{source}: corrupt gzip stream ({exc})") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_TYPES or raw[3] == 0:
        raise ValueError(f"{source}: not an IDX file (bad magic number {raw[:4].hex() or 'empty'})")
    dtype, ndim = _IDX_TYPES[raw[2]], raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise ValueError(f"{source}: truncated IDX header")
    shape = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(raw) - header != expected:
        raise ValueError(f"{source}: IDX payload is {len(raw) - header} bytes, shape {shape} needs {expected}")
    return np.frombuffer(raw, dtype=dtype, offset=header).reshape(shape).astype(dtype.newbyteorder("="))


def write_idx(path: str | os.PathLike[str], array: np.ndarray, *, compress: bool = True) -> None:
    """Write ``array`` as an IDX file (gzipped with a zero timestamp when ``compress``, so output is
    byte-reproducible)."""
    array = np.asarray(array)
    codes = {np.dtype(v).newbyteorder("="): k for k, v in _IDX_TYPES.items()}
    native = array.dtype.newbyteorder("=")
    if native not in codes:
        raise ValueError(f"dtype {array.dtype} has no IDX type code")
    if not 1 <= array.ndim <= 255:
        raise ValueError(f"IDX needs 1 to 255 dimensions, got {array.ndim}")
    code = codes[native]
    payload = (
        bytes([0, 0, code, array.ndim])
        + np.asarray(array.shape, dtype=">u4").tobytes()
        + np.ascontiguousarray(array, dtype=_IDX_TYPES[code]).tobytes()
    )
    if compress:
        buf = io.BytesIO()
        with gzip.GzipFile(fileobj=buf, mode="wb", mtime=0, filename="") as f:
            f.write(payload)
        payload = buf.getvalue()
    Path(path).write_bytes(payload)


def _find_idx_files(directory: Any, what: str) -> list[Any]:
    found, missing = [], []
    for stem in MNIST_FILES:
        for name in (stem, stem + ".gz"):
            candidate = directory / name
            if candidate.is_file():
                found.append(candidate)
                break
        else:
            missing.append(stem + "[.gz]")
    if missing:
        raise FileNotFoundError(f"{directory}: {what} directory is incomplete; missing {', '.join(missing)}")
    return found


def _idx_split(images: np.ndarray, labels: np.ndarray, name: str, source: Any) -> Dataset:
    if images.ndim != 3 or images.dtype != np.uint8:
        raise ValueError(f"{source}: expected uint8 images of shape (N, H, W), got {images.dtype} {images.shape}")
    if labels.ndim != 1 or labels.dtype != np.uint8 or labels.shape[0] != images.shape[0]:
        raise ValueError(f"{source}: expected {images.shape[0]} uint8 labels, got {labels.dtype} {labels.shape}")
    if labels.size and int(labels.max()) > 9:
        raise ValueError(f"{source}: label {int(labels.max())} outside 0..9")
    x = torch.from_numpy(images.astype(np.float32) / 255.0).unsqueeze(1)
    y = torch.from_numpy(labels.astype(np.int64))
    return Dataset(images=x, labels=y, n_classes=10, name=name)


def _load_idx_directory(directory: Any, what: str) -> DatasetSplits:
    if isinstance(directory, (str, os.PathLike)):
        directory = Path(directory)
        if not directory.is_dir():
            raise FileNotFoundError(f"{directory}: {what} directory does not exist")
    tri, trl, tei, tel = _find_idx_files(directory, what)
    return DatasetSplits(
        train=_idx_split(read_idx(tri), read_idx(trl), f"{what} train ({directory})", directory),
        test=_idx_split(read_idx(tei), read_idx(tel), f"{what} test ({directory})", directory),
    )


def load_mnist(directory: str | os.PathLike[str]) -> DatasetSplits:
    """MNIST from the four standard IDX files in ``directory`` (60 000 train, 10 000 test images)."""
    return _load_idx_directory(directory, "MNIST")


def load_fashion_mnist(directory: str | os.PathLike[str]) -> DatasetSplits:
    """Fashion-MNIST from its four IDX files in ``directory`` (same names and format as MNIST)."""
    return _load_idx_directory(directory, "Fashion-MNIST")


def load_embedded_mnist() -> DatasetSplits:
    """The MNIST subset shipped in the package: 10 000 training and 2 000 test images, 10% per class.

    Built from the official MNIST files by ``training/data/make_subset.py`` (fixed seed); MNIST is by
    Y. LeCun, C. Cortes and C. J. C. Burges, available under CC BY-SA 3.0.
    """
    return _load_idx_directory(resources.files("training") / "data" / "mnist_subset", "embedded MNIST subset")


# --------------------------------------------------------------------------------------------------
# CIFAR-10 python batches, through a restricted unpickler
# --------------------------------------------------------------------------------------------------


class _NdarrayType:
    """Stands in for ``numpy.ndarray`` as the first argument of ``_reconstruct``."""


class _DtypeStub:
    """Stands in for ``numpy.dtype``: records the type string only."""

    def __init__(self, spec: Any, align: Any = False, copy: Any = True):
        self.spec = spec.decode("ascii") if isinstance(spec, bytes) else str(spec)

    def __setstate__(self, state: Any) -> None:
        self.state = state


class _ArrayStub:
    """Stands in for a pickled numpy array: records shape, dtype and raw bytes."""

    def __init__(self) -> None:
        self.shape: tuple[int, ...] | None = None
        self.dtype: _DtypeStub | None = None
        self.fortran = False
        self.raw: bytes | None = None

    def __setstate__(self, state: Any) -> None:
        if isinstance(state, tuple) and len(state) == 5:
            state = state[1:]  # (version, shape, dtype, is_fortran, raw)
        if not (isinstance(state, tuple) and len(state) == 4):
            raise pickle.UnpicklingError("unexpected numpy array state")
        shape, dtype, fortran, raw = state
        self.shape, self.dtype, self.fortran = tuple(int(s) for s in shape), dtype, bool(fortran)
        self.raw = raw.encode("latin1") if isinstance(raw, str) else bytes(raw)

    def to_numpy(self) -> np.ndarray:
        if self.raw is None or self.shape is None or not isinstance(self.dtype, _DtypeStub):
            raise ValueError("incomplete numpy array in pickle")
        if self.dtype.spec not in ("u1", "|u1", "uint8"):
            raise ValueError(f"expected a uint8 array, found dtype {self.dtype.spec!r}")
        order = "F" if self.fortran else "C"
        return np.frombuffer(self.raw, dtype=np.uint8).reshape(self.shape, order=order).copy()


def _reconstruct(subtype: Any, shape: Any, typecode: Any) -> _ArrayStub:
    if subtype is not _NdarrayType:
        raise pickle.UnpicklingError("only plain numpy arrays are accepted")
    return _ArrayStub()


def _frombuffer(buf: Any, dtype: Any, shape: Any, order: Any) -> _ArrayStub:
    stub = _ArrayStub()
    stub.__setstate__((tuple(shape), dtype, order == "F", bytes(buf)))
    return stub


def _latin1_encode(text: Any, encoding: str = "utf-8") -> bytes:
    # Protocol-2 pickles written by Python 3 store bytes as _codecs.encode(str, "latin1").
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise pickle.UnpicklingError("only _codecs.encode(str, 'latin1') is accepted")
    return text.encode("latin1")


_ALLOWED_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy.core.numeric", "_frombuffer"): _frombuffer,
    ("numpy._core.numeric", "_frombuffer"): _frombuffer,
    ("numpy", "ndarray"): _NdarrayType,
    ("numpy", "dtype"): _DtypeStub,
    ("_codecs", "encode"): _latin1_encode,
}


class _CifarUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        try:
            return _ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(f"refusing to load global {module}.{name}") from None


def _get(d: dict[Any, Any], key: str) -> Any:
    for k in (key.encode("ascii"), key):
        if k in d:
            return d[k]
    raise KeyError(key)


def _read_cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    try:
        batch = _CifarUnpickler(io.BytesIO(path.read_bytes()), encoding="bytes").load()
        if not isinstance(batch, dict):
            raise ValueError("the pickle does not hold a dict")
        data, labels = _get(batch, "data"), _get(batch, "labels")
        images = data.to_numpy() if isinstance(data, _ArrayStub) else None
        if images is None:
            raise ValueError("'data' is not a numpy array")
        y = np.asarray(labels, dtype=np.int64)
    except (pickle.UnpicklingError, ValueError, KeyError, EOFError, TypeError, AttributeError) as exc:
        raise ValueError(f"{path}: not a CIFAR-10 python batch ({exc})") from None
    if images.ndim != 2 or images.shape[1] != 3072 or y.shape != (images.shape[0],):
        raise ValueError(f"{path}: expected N x 3072 uint8 data and N labels, got {images.shape}, {y.shape}")
    if y.size and (int(y.min()) < 0 or int(y.max()) > 9):
        raise ValueError(f"{path}: labels outside 0..9")
    return images.reshape(-1, 3, 32, 32), y


def load_cifar10(directory: str | os.PathLike[str]) -> DatasetSplits:
    """CIFAR-10 from its python-version batches (50 000 train, 10 000 test images, 3 x 32 x 32).

    ``directory`` holds ``data_batch_1`` ... ``data_batch_5`` and ``test_batch``, or is the parent of
    ``cifar-10-batches-py``. Batches are read with the restricted unpickler described in the module
    docstring.
    """
    directory = Path(directory)
    if (directory / "cifar-10-batches-py").is_dir():
        directory = directory / "cifar-10-batches-py"
    if not directory.is_dir():
        raise FileNotFoundError(f"{directory}: CIFAR-10 directory does not exist")
    missing = [name for name in CIFAR10_FILES if not (directory / name).is_file()]
    if missing:
        raise FileNotFoundError(f"{directory}: CIFAR-10 directory is incomplete; missing {', '.join(missing)}")
    parts = [_read_cifar_batch(directory / name) for name in CIFAR10_FILES]

    def split(chunks: list[tuple[np.ndarray, np.ndarray]], which: str) -> Dataset:
        x = np.concatenate([c[0] for c in chunks]).astype(np.float32) / 255.0
        y = np.concatenate([c[1] for c in chunks])
        return Dataset(
            images=torch.from_numpy(x), labels=torch.from_numpy(y), n_classes=10,
            name=f"CIFAR-10 {which} ({directory})",
        )

    return DatasetSplits(train=split(parts[:5], "train"), test=split(parts[5:], "test"))
