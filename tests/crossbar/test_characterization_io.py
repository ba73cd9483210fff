"""Characterization files: round trip, provenance, units, and rejection of damaged or foreign files."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import h5py
import numpy as np
import pytest

from crossbar import ChipConfig, Chip, TileConfig, load_profile
from crossbar.characterization import Characterization, CharacterizationProtocol, characterize
from crossbar.characterization_io import FILE_KIND, SCHEMA_VERSION, read_characterization, read_surrogate_params, write_characterization
from crossbar.hdf5io import HDF5FormatError, atomic_h5, write_array
from crossbar.profiles import DeviceProfile


@pytest.fixture(scope="module")
def char() -> Characterization:
    chip = Chip("pcm", ChipConfig(tile=TileConfig(rows=16, cols=8)), seed=5)
    protocol = CharacterizationProtocol(n_inputs=256, chunk_size=64, n_sweep_inputs=32, times_sec=(20.0, 2e3), temperatures_kelvin=(300.0, 330.0),
                                        raw_vectors=40, seed=2)
    w = np.random.default_rng(0).standard_normal((12, 20))
    return characterize(chip, {"layer": w, "probe": "density_ramp"}, protocol=protocol)


@pytest.fixture()
def path(tmp_path: Path, char: Characterization) -> Path:
    return write_characterization(tmp_path / "chip.h5", char)


def _assert_same(a: object, b: object, where: str = "") -> None:
    if isinstance(a, DeviceProfile):  # the profile is recorded by its exact TOML text (its path is the file's)
        assert isinstance(b, DeviceProfile) and a.toml_text == b.toml_text and a.name == b.name, where
    elif dataclasses.is_dataclass(a) and not isinstance(a, type):
        assert type(a) is type(b), where
        for f in dataclasses.fields(a):
            _assert_same(getattr(a, f.name), getattr(b, f.name), f"{where}.{f.name}")
    elif isinstance(a, np.ndarray):
        np.testing.assert_array_equal(a, b, err_msg=where)
        assert a.dtype == np.asarray(b).dtype, where
    elif isinstance(a, tuple):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            _assert_same(x, y, f"{where}[{i}]")
    elif isinstance(a, float):
        assert a == b or (np.isnan(a) and np.isnan(b)), f"{where}: {a} != {b}"
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"


def test_round_trip_is_exact(path: Path, char: Characterization) -> None:
    back = read_characterization(path)
    _assert_same(char, back, "char")
    assert read_surrogate_params(path) == char.surrogate_params
    assert back.summary() == char.summary()


def test_file_has_provenance_units_and_compressed_raw_samples(path: Path, char: Characterization) -> None:
    with h5py.File(path, "r") as fh:
        attrs = dict(fh.attrs)
        assert attrs["file_kind"] == FILE_KIND and attrs["schema_version"] == SCHEMA_VERSION
        for key in ("package_version", "created_utc", "seed", "profile_toml", "chip_config_json", "protocol_json",
                    "tile_configuration_json", "content_sha256"):
            assert key in attrs, key
        assert attrs["profile_toml"] == load_profile("pcm").toml_text
        assert json.loads(attrs["tile_configuration_json"])["rows"] == 16
        assert attrs["seed"] == 5
        datasets: list[h5py.Dataset] = []
        fh.visititems(lambda _n, o: datasets.append(o) if isinstance(o, h5py.Dataset) else None)
        assert datasets and all("units" in d.attrs for d in datasets), [d.name for d in datasets if "units" not in d.attrs]
        raw = fh["matrices/layer/raw_outputs"]
        assert raw.shape == (4, 40, 12) and raw.attrs["units"] == "y"
        assert fh["fit/read_noise/alpha_rel"].attrs["units"] == "I_dev^2"
        assert "std_error" in fh["fit/read_noise/alpha_rel"].attrs


def test_large_raw_samples_are_chunked_and_compressed(tmp_path: Path) -> None:
    chip = Chip("pcm", ChipConfig(tile=TileConfig(rows=64, cols=64)), seed=0)
    protocol = CharacterizationProtocol(n_inputs=128, raw_vectors=64, times_sec=(), temperatures_kelvin=())
    c = characterize(chip, {"w": np.random.default_rng(1).standard_normal((64, 64))}, protocol=protocol)
    p = write_characterization(tmp_path / "big.h5", c)
    with h5py.File(p, "r") as fh:
        ds = fh["matrices/w/raw_outputs"]
        assert ds.shape == (4, 64, 64) and ds.compression == "gzip" and ds.chunks is not None


def _damage(path: Path, how: str) -> None:
    if how == "truncate":
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])
    elif how == "foreign":
        path.write_text("time,value\n0,1\n")
    elif how == "empty":
        path.write_bytes(b"")
    elif how == "other-kind":
        with atomic_h5(path, file_kind="analog_state", schema_version=1, profile=load_profile("pcm"), config=ChipConfig(), seed=0) as fh:
            write_array(fh, "x", np.zeros(3), units="1")
    elif how == "schema":
        with h5py.File(path, "r+") as fh:
            fh.attrs["schema_version"] = SCHEMA_VERSION + 1
    elif how == "missing":
        with h5py.File(path, "r+") as fh:
            del fh["fit/read_noise/alpha_rel"]
            del fh["matrices/layer/weights"]
    elif how == "units":
        with h5py.File(path, "r+") as fh:
            fh["fit/surrogate/gain_rel"].attrs["units"] = "%"
    elif how == "edited":
        with h5py.File(path, "r+") as fh:
            fh["fit/surrogate/read_noise_alpha_rel"][()] = 0.5
    elif how == "missing-file":
        path.unlink()
    else:
        raise AssertionError(how)


@pytest.mark.parametrize(
    ("how", "match"),
    [
        ("truncate", "truncated or not HDF5"),
        ("foreign", "not a readable HDF5"),
        ("empty", "not a readable HDF5"),
        ("other-kind", "'analog_state' file"),
        ("schema", "schema_version"),
        ("missing", r"missing /fit/read_noise/alpha_rel, /matrices/layer/weights"),
        ("units", "units '%'"),
        ("edited", "checksum"),
        ("missing-file", "no such file"),
    ],
    ids=["truncated", "foreign", "empty", "other-kind", "schema", "missing-datasets", "wrong-units", "edited", "missing-file"],
)
def test_bad_files_are_rejected_with_one_clear_line(path: Path, how: str, match: str) -> None:
    _damage(path, how)
    with pytest.raises(HDF5FormatError, match=match) as info:
        read_characterization(path)
    assert "\n" not in str(info.value) and str(path) in str(info.value)


def test_random_byte_damage_is_never_read_as_wrong_numbers(path: Path, char: Characterization) -> None:
    """Flip bytes at many places: the file is either rejected with HDF5FormatError or reads back exactly."""
    good = path.read_bytes()
    rng = np.random.default_rng(0)
    rejected = 0
    for offset in np.linspace(0, len(good) - 8, 17).astype(int):
        data = bytearray(good)
        for k in range(8):
            data[offset + k] ^= int(rng.integers(1, 256))
        path.write_bytes(bytes(data))
        try:
            back = read_characterization(path)
        except HDF5FormatError as exc:
            assert "\n" not in str(exc)
            rejected += 1
            continue
        _assert_same(char, back, "char")  # damage in unused bytes only
    assert rejected > 8


def test_write_is_atomic(tmp_path: Path, char: Characterization) -> None:
    target = write_characterization(tmp_path / "chip.h5", char)
    before = target.read_bytes()
    broken = dataclasses.replace(char, matrices=(dataclasses.replace(char.matrices[0], weights=None),))  # type: ignore[arg-type]
    with pytest.raises(TypeError):  # h5py cannot store an object array: the write fails midway
        write_characterization(target, broken)
    assert target.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["chip.h5"]
