"""HDF5 provenance, atomic writes and checked reads."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest

from crossbar import ChipConfig, load_profile
from crossbar.hdf5io import HDF5FormatError, atomic_h5, open_checked, read_array, read_config, read_profile, write_array


def _write(path: Path, **kw: object) -> None:
    with atomic_h5(path, file_kind="test", schema_version=1, profile=load_profile("pcm"), config=ChipConfig(), seed=3, **kw) as fh:
        write_array(fh, "x", np.arange(10_000.0), units="S")


def test_round_trip_with_provenance(tmp_path: Path) -> None:
    path = tmp_path / "a.h5"
    _write(path, attrs={"note": "hello"})
    with open_checked(path, file_kind="test", schema_version=1) as fh:
        np.testing.assert_array_equal(read_array(fh, "x", units="S"), np.arange(10_000.0))
        assert read_profile(fh).name == "pcm"
        assert read_config(fh) == ChipConfig()
        assert fh.attrs["seed"] == 3 and fh.attrs["note"] == "hello"
        assert fh["x"].compression == "gzip"


def test_a_crash_leaves_the_previous_file_intact(tmp_path: Path) -> None:
    path = tmp_path / "a.h5"
    _write(path)
    with pytest.raises(RuntimeError):
        with atomic_h5(path, file_kind="test", schema_version=1, profile=load_profile("pcm"), config=ChipConfig(), seed=4) as fh:
            write_array(fh, "x", np.zeros(3), units="S")
            raise RuntimeError("crash")
    with open_checked(path, file_kind="test", schema_version=1) as fh:
        assert fh.attrs["seed"] == 3
    assert [p.name for p in tmp_path.iterdir()] == ["a.h5"]


@pytest.mark.parametrize("damage", ["truncate", "foreign", "kind", "version", "no-attrs", "missing", "bad-version-attr"])
def test_bad_files_are_rejected_in_one_line(tmp_path: Path, damage: str) -> None:
    path = tmp_path / "a.h5"
    _write(path)
    kind, version = "test", 1
    if damage == "truncate":
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 3])
    elif damage == "foreign":
        path.write_text("not hdf5 at all")
    elif damage == "kind":
        kind = "characterization"
    elif damage == "version":
        version = 2
    elif damage == "no-attrs":
        with h5py.File(path, "w") as fh:
            fh["x"] = 1
    elif damage == "bad-version-attr":
        with h5py.File(path, "r+") as fh:
            fh.attrs["schema_version"] = "one"
    else:
        path.unlink()
    with pytest.raises(HDF5FormatError) as info:
        with open_checked(path, file_kind=kind, schema_version=version) as fh:
            read_array(fh, "x")
    assert "\n" not in str(info.value) and str(path) in str(info.value)
