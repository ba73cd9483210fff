"""HDF5 files of the project: atomic writes, provenance attributes, units on every dataset, checked reads.

Every file written here has root attributes ``file_kind`` (what it holds, e.g. ``"characterization"``),
``schema_version``, ``package_version``, ``created_utc``, ``seed``, ``profile_toml`` (the exact TOML
text of the device profile) and ``chip_config_json``. Every dataset carries a ``units`` attribute.
Files are written to a temporary file beside the target and renamed, so a crash never leaves a
half-written file where a good one was. Nothing is pickled.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import os
from pathlib import Path
from typing import Any, Iterator

import h5py
import numpy as np

from crossbar._version import __version__
from crossbar.config import ChipConfig, config_from_dict, config_to_dict
from crossbar.profiles import DeviceProfile, parse_profile

__all__ = [
    "HDF5FormatError",
    "atomic_h5",
    "open_checked",
    "read_array",
    "read_config",
    "read_profile",
    "write_array",
]

REQUIRED_ROOT_ATTRS = ("file_kind", "schema_version", "package_version", "created_utc", "seed", "profile_toml", "chip_config_json")


class HDF5FormatError(ValueError):
    """A file is not a valid file of the expected kind; the message is one line naming file and problem."""


@contextlib.contextmanager
def atomic_h5(
    path: str | Path,
    *,
    file_kind: str,
    schema_version: int,
    profile: DeviceProfile,
    config: ChipConfig,
    seed: int,
    attrs: dict[str, Any] | None = None,
) -> Iterator[h5py.File]:
    """Open a new HDF5 file for writing that appears at ``path`` only when the block succeeds.

    Parameters
    ----------
    path : path-like
        Final location; its directory must exist.
    file_kind, schema_version : str, int
        What the file holds and the version of its layout.
    profile, config, seed
        Provenance written as root attributes.
    attrs : dict, optional
        More root attributes (strings, numbers or small arrays).
    """
    final = Path(path)
    if not final.parent.is_dir():
        raise FileNotFoundError(f"{final.parent}: directory does not exist")
    tmp = final.with_name(f".{final.name}.tmp-{os.getpid()}")
    try:
        with h5py.File(tmp, "w") as fh:
            fh.attrs["file_kind"] = file_kind
            fh.attrs["schema_version"] = int(schema_version)
            fh.attrs["package_version"] = __version__
            fh.attrs["created_utc"] = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
            fh.attrs["seed"] = int(seed)
            fh.attrs["profile_toml"] = profile.toml_text
            fh.attrs["profile_name"] = profile.name
            fh.attrs["chip_config_json"] = json.dumps(config_to_dict(config))
            for key, value in (attrs or {}).items():
                fh.attrs[key] = value
            yield fh
        os.replace(tmp, final)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_array(group: h5py.Group, name: str, data: Any, *, units: str, description: str = "", **attrs: Any) -> h5py.Dataset:
    """Write a dataset with its ``units`` (``"1"`` for dimensionless); large arrays are chunked and compressed."""
    arr = np.asarray(data)
    kwargs: dict[str, Any] = {}
    if arr.size >= 4096 and arr.ndim >= 1:
        kwargs = {"compression": "gzip", "compression_opts": 4, "chunks": True, "shuffle": True}
    ds = group.create_dataset(name, data=arr, **kwargs)
    ds.attrs["units"] = units
    if description:
        ds.attrs["description"] = description
    for key, value in attrs.items():
        ds.attrs[key] = value
    return ds


def open_checked(path: str | Path, *, file_kind: str, schema_version: int) -> h5py.File:
    """Open an HDF5 file for reading after checking that it is a complete file of the expected kind.

    Raises
    ------
    HDF5FormatError
        If the file is missing, not HDF5 (truncated or foreign), of another kind or schema version, or
        lacks a required root attribute. The message names the file and the problem in one line.
    """
    p = Path(path)
    if not p.is_file():
        raise HDF5FormatError(f"{p}: no such file")
    try:
        fh = h5py.File(p, "r")
    except OSError as exc:
        raise HDF5FormatError(f"{p}: not a readable HDF5 file (truncated or not HDF5?): {str(exc).splitlines()[0]}") from None
    try:
        missing = [a for a in REQUIRED_ROOT_ATTRS if a not in fh.attrs]
        if missing:
            raise HDF5FormatError(f"{p}: not a crossbar file: missing root attribute(s) {', '.join(missing)}")
        kind = _as_str(fh.attrs["file_kind"])
        if kind != file_kind:
            raise HDF5FormatError(f"{p}: is a {kind!r} file, expected {file_kind!r}")
        version = int(fh.attrs["schema_version"])
        if version != schema_version:
            raise HDF5FormatError(f"{p}: {file_kind} schema_version {version}, this package reads {schema_version}")
    except HDF5FormatError:
        fh.close()
        raise
    except (OSError, KeyError, ValueError, TypeError) as exc:  # damaged root attributes (h5py raises OSError)
        fh.close()
        raise HDF5FormatError(f"{p}: damaged root attributes: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from None
    except BaseException:
        fh.close()
        raise
    return fh


def read_array(group: h5py.Group, name: str, *, units: str | None = None) -> np.ndarray:
    """Read a dataset, checking it exists (and its units, when given)."""
    if name not in group:
        raise HDF5FormatError(f"{group.file.filename}: missing dataset {group.name.rstrip('/')}/{name}")
    ds = group[name]
    if units is not None:
        found = _as_str(ds.attrs.get("units", ""))
        if found != units:
            raise HDF5FormatError(f"{group.file.filename}: dataset {ds.name} has units {found!r}, expected {units!r}")
    try:
        return ds[()]
    except OSError as exc:  # a chunk past the end of a truncated file
        raise HDF5FormatError(f"{group.file.filename}: dataset {ds.name} cannot be read (truncated?): {exc}") from None


def read_profile(fh: h5py.File) -> DeviceProfile:
    """The device profile recorded in a file's provenance."""
    return parse_profile(_as_str(fh.attrs["profile_toml"]), origin=f"{fh.filename}:profile_toml")


def read_config(fh: h5py.File) -> ChipConfig:
    """The chip configuration recorded in a file's provenance."""
    return config_from_dict(json.loads(_as_str(fh.attrs["chip_config_json"])), origin=f"{fh.filename}:chip_config_json")


def _as_str(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
