"""Loaders: IDX (gzipped or not), MNIST-style directories, CIFAR-10 batches, the embedded subset, real MNIST."""

from __future__ import annotations

import os
import pickle

import numpy as np
import pytest
import torch

from tests.training.helpers import REAL_MNIST, needs_real_mnist
from training.datasets import (
    CIFAR10_FILES,
    load_cifar10,
    load_embedded_mnist,
    load_fashion_mnist,
    load_mnist,
    read_idx,
    write_idx,
)


@pytest.mark.parametrize("compress", [True, False], ids=["gzip", "raw"])
@pytest.mark.parametrize(
    "array",
    [
        np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4),
        np.array([-3, 0, 7], dtype=np.int8),
        np.array([[1, -2], [300, 4]], dtype=np.int16),
        np.array([1.5, -2.25], dtype=np.float32),
        np.array([[1e300]], dtype=np.float64),
    ],
    ids=["uint8-3d", "int8", "int16", "float32", "float64"],
)
def test_idx_round_trip(tmp_path, array, compress):
    path = tmp_path / "x.idx"
    write_idx(path, array, compress=compress)
    raw = path.read_bytes()
    assert (raw[:2] == b"\x1f\x8b") == compress
    back = read_idx(path)
    assert back.dtype == array.dtype.newbyteorder("=") and back.shape == array.shape
    np.testing.assert_array_equal(back, array)


def test_idx_header_is_big_endian_per_spec(tmp_path):
    # Hand-written file: magic 0x00000801 (uint8, 1-d), count 3 (big-endian), then the bytes.
    path = tmp_path / "labels"
    path.write_bytes(bytes([0, 0, 8, 1, 0, 0, 0, 3, 7, 2, 9]))
    np.testing.assert_array_equal(read_idx(path), [7, 2, 9])


@pytest.mark.parametrize(
    "payload, message",
    [
        (b"", "not an IDX file"),
        (bytes([1, 0, 8, 1, 0, 0, 0, 1, 5]), "not an IDX file"),
        (bytes([0, 0, 0x42, 1, 0, 0, 0, 1, 5]), "not an IDX file"),
        (bytes([0, 0, 8, 1, 0, 0, 0, 3, 7, 2]), "payload is 2 bytes"),
        (bytes([0, 0, 8, 2, 0, 0]), "truncated IDX header"),
    ],
    ids=["empty", "bad-zero-bytes", "bad-type", "short-payload", "short-header"],
)
def test_idx_rejects_malformed_files(tmp_path, payload, message):
    path = tmp_path / "bad"
    path.write_bytes(payload)
    with pytest.raises(ValueError, match=message):
        read_idx(path)


def _write_mnist_dir(directory, n_train=12, n_test=5, compress=True):
    rng = np.random.default_rng(0)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "train-labels-idx1-ubyte": rng.integers(0, 10, n_train, dtype=np.uint8),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": rng.integers(0, 10, n_test, dtype=np.uint8),
    }
    for stem, arr in arrays.items():
        write_idx(directory / (stem + (".gz" if compress else "")), arr, compress=compress)
    return arrays


@pytest.mark.parametrize("loader", [load_mnist, load_fashion_mnist], ids=["mnist", "fashion"])
@pytest.mark.parametrize("compress", [True, False], ids=["gzip", "raw"])
def test_mnist_style_directory(tmp_path, loader, compress):
    arrays = _write_mnist_dir(tmp_path, compress=compress)
    splits = loader(tmp_path)
    assert splits.train.images.shape == (12, 1, 28, 28) and splits.test.images.shape == (5, 1, 28, 28)
    assert splits.train.images.dtype == torch.float32
    np.testing.assert_allclose(
        splits.train.images[:, 0].numpy(), arrays["train-images-idx3-ubyte"] / 255.0, rtol=0, atol=1e-7
    )
    np.testing.assert_array_equal(splits.test.labels.numpy(), arrays["t10k-labels-idx1-ubyte"])


def test_incomplete_mnist_directory_names_the_missing_file(tmp_path):
    _write_mnist_dir(tmp_path)
    os.remove(tmp_path / "t10k-labels-idx1-ubyte.gz")
    with pytest.raises(FileNotFoundError) as info:
        load_mnist(tmp_path)
    message = str(info.value)
    assert "t10k-labels-idx1-ubyte" in message and "\n" not in message
    assert "train-images" not in message


def test_missing_directory_is_one_line(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_mnist(tmp_path / "nowhere")


def test_mnist_rejects_mismatched_label_count(tmp_path):
    _write_mnist_dir(tmp_path)
    write_idx(tmp_path / "train-labels-idx1-ubyte.gz", np.zeros(3, dtype=np.uint8))
    with pytest.raises(ValueError, match="expected 12 uint8 labels"):
        load_mnist(tmp_path)


def _cifar_batch(n, seed, *, str_keys=False):
    rng = np.random.default_rng(seed)
    data = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
    labels = [int(v) for v in rng.integers(0, 10, n)]
    keys = ("batch_label", "labels", "data", "filenames")
    keys = keys if str_keys else tuple(k.encode() for k in keys)
    return dict(zip(keys, (b"batch", labels, data, [b"img.png"] * n))), data, labels


@pytest.mark.parametrize("protocol", [2, 4, 5], ids=["proto2", "proto4", "proto5"])
@pytest.mark.parametrize("str_keys", [False, True], ids=["bytes-keys", "str-keys"])
def test_cifar10_batches(tmp_path, protocol, str_keys):
    expected = {}
    for i, name in enumerate(CIFAR10_FILES):
        batch, data, labels = _cifar_batch(3, i, str_keys=str_keys)
        (tmp_path / name).write_bytes(pickle.dumps(batch, protocol=protocol))
        expected[name] = (data, labels)
    splits = load_cifar10(tmp_path)
    assert splits.train.images.shape == (15, 3, 32, 32) and splits.test.images.shape == (3, 3, 32, 32)
    first = expected["data_batch_1"][0].reshape(3, 3, 32, 32) / 255.0
    np.testing.assert_allclose(splits.train.images[:3].numpy(), first, atol=1e-7)
    np.testing.assert_array_equal(splits.test.labels.numpy(), expected["test_batch"][1])


def test_cifar10_accepts_parent_directory(tmp_path):
    inner = tmp_path / "cifar-10-batches-py"
    inner.mkdir()
    for i, name in enumerate(CIFAR10_FILES):
        (inner / name).write_bytes(pickle.dumps(_cifar_batch(2, i)[0], protocol=2))
    assert len(load_cifar10(tmp_path).train) == 10


class _Sneaky:
    def __reduce__(self):
        return (os.getcwd, ())


def test_cifar10_refuses_arbitrary_globals(tmp_path):
    for i, name in enumerate(CIFAR10_FILES):
        batch = _cifar_batch(2, i)[0]
        if name == "data_batch_3":
            batch[b"labels"] = _Sneaky()
        (tmp_path / name).write_bytes(pickle.dumps(batch, protocol=2))
    with pytest.raises(ValueError, match=r"data_batch_3: not a CIFAR-10 python batch \(refusing to load global"):
        load_cifar10(tmp_path)


def test_cifar10_rejects_non_uint8_data(tmp_path):
    for i, name in enumerate(CIFAR10_FILES):
        batch = _cifar_batch(2, i)[0]
        batch[b"data"] = batch[b"data"].astype(np.float32)
        (tmp_path / name).write_bytes(pickle.dumps(batch, protocol=2))
    with pytest.raises(ValueError, match="expected a uint8 array"):
        load_cifar10(tmp_path)


def test_incomplete_cifar10_directory_names_the_missing_file(tmp_path):
    for i, name in enumerate(CIFAR10_FILES[:-1]):
        (tmp_path / name).write_bytes(pickle.dumps(_cifar_batch(2, i)[0], protocol=2))
    with pytest.raises(FileNotFoundError, match="missing test_batch$"):
        load_cifar10(tmp_path)


def test_embedded_subset_is_real_balanced_mnist():
    splits = load_embedded_mnist()
    assert splits.train.images.shape == (10000, 1, 28, 28) and splits.test.images.shape == (2000, 1, 28, 28)
    assert torch.bincount(splits.train.labels).tolist() == [1000] * 10
    assert torch.bincount(splits.test.labels).tolist() == [200] * 10
    # Real digits: mostly-black background, mean intensity of MNIST is ~0.13.
    assert 0.10 < float(splits.train.images.mean()) < 0.16


@needs_real_mnist
def test_real_mnist_loads_with_official_counts():
    splits = load_mnist(REAL_MNIST)
    assert len(splits.train) == 60000 and len(splits.test) == 10000
    assert torch.bincount(splits.test.labels).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


@needs_real_mnist
def test_embedded_subset_images_come_from_real_mnist():
    real = load_mnist(REAL_MNIST).test
    sub = load_embedded_mnist().test
    flat_real = {bytes((img * 255).round().to(torch.uint8).numpy().tobytes()) for img in real.images}
    hits = sum(bytes((img * 255).round().to(torch.uint8).numpy().tobytes()) in flat_real for img in sub.images[:50])
    assert hits == 50
