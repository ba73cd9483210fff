"""Characterization files: one HDF5 file per characterization, written atomically, read with checks.

Layout (``file_kind = "characterization"``, :data:`SCHEMA_VERSION`)::

    /                      root attributes of crossbar.hdf5io (schema_version, package_version, created_utc,
                           seed, profile_toml, chip_config_json) + protocol_json, tile_configuration_json,
                           operating_time_sec, operating_temperature_kelvin, content_sha256
    /fit/read_noise/       one scalar dataset per coefficient (attribute std_error); r2, chi2_per_dof
    /fit/correlated/       var_rel, std_error
    /fit/static/           c0, c1, c2 (std_error), bin_edges_rel, bin_count, bin_var_rel, bin_var_se, ...
    /fit/drift/            nu, reference_time_sec, ... (absent without a time sweep)
    /fit/temperature/      activation_energy_ev, ... (absent without a temperature sweep)
    /fit/pi_hw/            levels, bin_edges, counts, probabilities (weight units, w_max attribute)
    /fit/surrogate/        one scalar dataset per numeric SurrogateParams field; enums as attributes
    /fit/                  enob_total_bits, enob_dynamic_bits, static_outlier_fraction, ks statistics
    /matrices/<name>/      weights, weight_scale, static errors, bins, raw/inputs, raw/outputs, sweeps

Every dataset has a ``units`` attribute (``"1"`` for dimensionless; ``"I_dev"`` is the current of one
device at full window and input, the normalized current unit of :mod:`crossbar.fitting`; ``"w"`` and
``"x"`` the units of the weights and inputs, ``"y"`` of the outputs). Large arrays are chunked and
compressed. ``content_sha256`` is a SHA-256 over every dataset and attribute, checked on reading, so a
file damaged after writing is rejected instead of read as wrong numbers.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from crossbar.characterization import (
    READ_NOISE_TERMS,
    Characterization,
    CharacterizationProtocol,
    MatrixCharacterization,
    SweepTable,
)
from crossbar.config import config_to_dict
from crossbar.fitting import ArrheniusFit, DriftFit, LinearFit, PiHW, SurrogateParams
from crossbar.hdf5io import HDF5FormatError, atomic_h5, open_checked, read_array, read_config, read_profile, write_array

__all__ = ["FILE_KIND", "SCHEMA_VERSION", "read_characterization", "read_surrogate_params", "write_characterization"]

FILE_KIND = "characterization"
"""``file_kind`` root attribute of a characterization file."""
SCHEMA_VERSION = 1
"""Version of the layout in the module docstring."""

_READ_NOISE_UNITS = {
    "output_var_rel": "I_dev^2",
    "alpha_rel": "I_dev^2",
    "offset_rel": "I_dev^2",
    "beta_rel": "I_dev",
    "activation_var_rel": "y^2",
}
_SURROGATE_UNITS = {
    "tile_rows": "1",
    "tile_cols": "1",
    "input_max": "x",
    "dac_bits": "bit",
    "adc_bits": "bit",
    "adc_full_scale_rel": "I_dev",
    "gain_rel": "1",
    "static_var_c0_rel": "1",
    "static_var_c1_rel": "1",
    "static_var_c2_rel": "1",
    "read_noise_alpha_rel": "I_dev^2",
    "read_noise_offset_rel": "I_dev^2",
    "output_noise_std_rel": "I_dev",
    "beta_rel": "I_dev",
    "activation_correlated_std_rel": "y",
    "activation_uncorrelated_std_rel": "y",
    "time_sec": "s",
    "temperature_kelvin": "K",
}
_SURROGATE_ATTRS = ("scale_mode", "input_range", "clip_inputs", "source")
_MATRIX_UNITS = {
    "weights": "w",
    "weight_scale": "w",
    "gain_rel": "1",
    "rms_total_rel": "I_dev",
    "rms_dynamic_rel": "I_dev",
    "rms_static_rel": "I_dev",
    "enob_total_bits": "bit",
    "enob_dynamic_bits": "bit",
    "saturated_fraction": "1",
    "static_error_rel": "1",
    "static_residual_var": "w^2",
    "static_inverse_gram_diag": "1",
    "tile_static_std_rel": "1",
    "bin_edges_rel": "I_dev",
    "bin_count": "1",
    "bin_mean_error_rel": "I_dev",
    "bin_std_total_rel": "I_dev",
    "bin_std_dynamic_rel": "I_dev",
    "bin_std_dynamic_model_rel": "I_dev",
    "raw_inputs": "x",
    "raw_outputs": "y",
}
_SWEEP_UNITS = {"gain": "1", "rms_total_rel": "I_dev", "rms_dynamic_rel": "I_dev", "rms_static_rel": "I_dev", "enob_total_bits": "bit"}
_FIT_SCALARS = {
    "enob_total_bits": "bit",
    "enob_dynamic_bits": "bit",
    "static_outlier_fraction": "1",
    "static_ks_statistic": "1",
    "dynamic_ks_statistic": "1",
}


# --------------------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------------------


def _scalar(group: h5py.Group, name: str, value: float, units: str, **attrs: Any) -> None:
    write_array(group, name, np.float64(value), units=units, **attrs)


def _write_linear(group: h5py.Group, fit: LinearFit, units: dict[str, str]) -> None:
    for name, value, se in zip(fit.names, fit.coefficients, fit.std_errors):
        _scalar(group, name, value, units[name], std_error=float(se))
    _scalar(group, "r2", fit.r2, "1")
    _scalar(group, "chi2_per_dof", fit.chi2_per_dof, "1")


def _write_dataclass_floats(group: h5py.Group, obj: Any, units: dict[str, str]) -> None:
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if isinstance(value, (int, float, np.floating)) and not isinstance(value, bool):
            _scalar(group, f.name, value, units.get(f.name, "1"))


def write_characterization(path: str | Path, char: Characterization) -> Path:
    """Write ``char`` to one HDF5 file at ``path`` atomically (temporary file, then rename); returns the path."""
    if not isinstance(char, Characterization):
        raise ValueError(f"char must be a Characterization, got {type(char).__name__}")
    attrs = {
        "protocol_json": json.dumps(char.protocol.to_dict()),
        "tile_configuration_json": json.dumps(config_to_dict(char.config)["tile"]),
        "operating_time_sec": float(char.time_sec),
        "operating_temperature_kelvin": float(char.temperature_kelvin),
    }
    with atomic_h5(
        path, file_kind=FILE_KIND, schema_version=SCHEMA_VERSION, profile=char.profile, config=char.config,
        seed=char.chip_seed, attrs=attrs,
    ) as fh:
        fit = fh.create_group("fit")
        _write_linear(fit.create_group("read_noise"), char.read_noise, _READ_NOISE_UNITS)
        corr = fit.create_group("correlated")
        _scalar(corr, "var_rel", char.correlated_var_rel, "y^2")
        _scalar(corr, "std_error", char.correlated_var_std_error, "y^2")
        st = fit.create_group("static")
        _write_linear(st, char.static, {"c0": "1", "c1": "1", "c2": "1"})
        write_array(st, "bin_edges_rel", char.static_bin_edges_rel, units="1", description="bins of |w~|")
        write_array(st, "bin_count", char.static_bin_count, units="1")
        write_array(st, "bin_var_rel", char.static_bin_var_rel, units="1", description="static error variance per bin")
        write_array(st, "bin_var_se", char.static_bin_var_se, units="1")
        for name, units in _FIT_SCALARS.items():
            _scalar(fit, name, getattr(char, name), units)
        if char.drift is not None:
            _write_dataclass_floats(fit.create_group("drift"), char.drift, {"reference_time_sec": "s"})
        if char.temperature is not None:
            _write_dataclass_floats(
                fit.create_group("temperature"), char.temperature,
                {"activation_energy_ev": "eV", "activation_energy_std_error_ev": "eV", "reference_kelvin": "K"},
            )
        pi = fit.create_group("pi_hw")
        pi.attrs["bits"] = char.pi_hw.bits
        pi.attrs["source"] = char.pi_hw.source
        _scalar(pi, "w_max", char.pi_hw.w_max, "w")
        _scalar(pi, "pseudo_count", char.pi_hw.pseudo_count, "1")
        write_array(pi, "levels", char.pi_hw.levels, units="w")
        write_array(pi, "bin_edges", char.pi_hw.bin_edges, units="w")
        write_array(pi, "counts", char.pi_hw.counts, units="1")
        write_array(pi, "probabilities", char.pi_hw.probabilities, units="1")
        sp = fit.create_group("surrogate")
        params = char.surrogate_params.to_dict()
        none_fields = [k for k, v in params.items() if v is None]
        for key in _SURROGATE_ATTRS:
            sp.attrs[key] = params[key]
        sp.attrs["none_fields"] = json.dumps(none_fields)
        for key, units in _SURROGATE_UNITS.items():
            if params[key] is not None:
                _scalar(sp, key, params[key], units)
        mats = fh.create_group("matrices")
        mats.attrs["order"] = json.dumps([m.name for m in char.matrices])
        for m in char.matrices:
            _write_matrix(mats.create_group(m.name), m)
        fh.attrs["content_sha256"] = _content_hash(fh)
    return Path(path)


def _write_matrix(group: h5py.Group, m: MatrixCharacterization) -> None:
    for name, units in _MATRIX_UNITS.items():
        write_array(group, name, getattr(m, name), units=units)
    for label, table in (("time_sweep", m.time_sweep), ("temperature_sweep", m.temperature_sweep)):
        if table is None:
            continue
        g = group.create_group(label)
        g.attrs["quantity"] = table.quantity
        write_array(g, "values", table.values, units="s" if table.quantity == "time_sec" else "K")
        for name, units in _SWEEP_UNITS.items():
            write_array(g, name, getattr(table, name), units=units)


def _content_hash(fh: h5py.File) -> str:
    """SHA-256 over every dataset (name, dtype, shape, bytes) and attribute except ``content_sha256``."""
    h = hashlib.sha256()

    def attrs_of(obj: h5py.HLObject) -> None:
        for key in sorted(obj.attrs):
            if key in ("content_sha256",):
                continue
            value = obj.attrs[key]
            h.update(key.encode())
            arr = np.asarray(value.decode() if isinstance(value, bytes) else value)
            if arr.dtype.kind in "OUS":
                h.update(str(arr.tolist()).encode())
            else:
                h.update(arr.dtype.str.encode() + np.ascontiguousarray(arr).tobytes())

    items: list[tuple[str, h5py.HLObject]] = []
    fh.visititems(lambda name, obj: items.append((name, obj)))
    attrs_of(fh)
    for name, obj in sorted(items, key=lambda kv: kv[0]):
        h.update(name.encode())
        attrs_of(obj)
        if isinstance(obj, h5py.Dataset):
            try:
                data = np.ascontiguousarray(obj[()])
            except OSError as exc:  # a damaged compressed chunk
                raise HDF5FormatError(f"{fh.filename}: dataset /{name} cannot be read (damaged or truncated?): {str(exc).splitlines()[0]}") from None
            h.update(f"{data.dtype.str}{data.shape}".encode())
            h.update(data.tobytes())
    return h.hexdigest()


# --------------------------------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------------------------------


class _Reader:
    """Reads datasets and remembers every missing one, so one error can name them all."""

    def __init__(self, fh: h5py.File) -> None:
        self.fh = fh
        self.missing: list[str] = []

    def group(self, path: str) -> h5py.Group | None:
        obj = self.fh.get(path)
        if not isinstance(obj, h5py.Group):
            self.missing.append(f"/{path}")
            return None
        return obj

    def array(self, group: h5py.Group | None, name: str, units: str) -> Any:
        if group is None:
            return None
        if name not in group:
            self.missing.append(f"{group.name.rstrip('/')}/{name}")
            return None
        return read_array(group, name, units=units)

    def scalar(self, group: h5py.Group | None, name: str, units: str) -> float:
        value = self.array(group, name, units)
        return math.nan if value is None else float(value)

    def attr(self, obj: h5py.HLObject | None, name: str) -> Any:
        if obj is None:
            return None
        if name not in obj.attrs:
            self.missing.append(f"{obj.name.rstrip('/') or ''}@{name}")
            return None
        value = obj.attrs[name]
        return value.decode() if isinstance(value, bytes) else value

    def check(self) -> None:
        if self.missing:
            shown = ", ".join(self.missing[:12]) + (f" and {len(self.missing) - 12} more" if len(self.missing) > 12 else "")
            raise HDF5FormatError(f"{self.fh.filename}: incomplete characterization file: missing {shown}")


def _read_linear(rd: _Reader, path: str, names: tuple[str, ...], units: dict[str, str]) -> LinearFit:
    g = rd.group(path)
    values, ses = [], []
    for name in names:
        values.append(rd.scalar(g, name, units[name]))
        se = math.nan
        if g is not None and name in g:
            se = float(g[name].attrs.get("std_error", math.nan))
        ses.append(se)
    return LinearFit(
        names=names, coefficients=np.array(values), std_errors=np.array(ses),
        r2=rd.scalar(g, "r2", "1"), chi2_per_dof=rd.scalar(g, "chi2_per_dof", "1"),
    )


def read_characterization(path: str | Path) -> Characterization:
    """Read a characterization file, checking kind, schema, completeness, units and content hash.

    Raises
    ------
    HDF5FormatError
        One line naming the file and the problem: missing, truncated or foreign file, another kind or
        schema version, missing datasets (all of them named), wrong units, or damaged content.
    """
    try:
        fh = open_checked(path, file_kind=FILE_KIND, schema_version=SCHEMA_VERSION)
    except HDF5FormatError:
        raise
    except (OSError, RuntimeError, KeyError, TypeError, ValueError) as exc:  # damaged root attributes
        raise HDF5FormatError(f"{path}: damaged characterization file: {_first_line(exc)}") from None
    with fh:
        try:
            return _read(fh)
        except HDF5FormatError:
            raise
        except (OSError, RuntimeError, KeyError, TypeError, ValueError) as exc:  # damaged HDF5 structures
            raise HDF5FormatError(f"{fh.filename}: damaged characterization file: {_first_line(exc)}") from None


def _first_line(exc: BaseException) -> str:
    text = str(exc)
    return text.splitlines()[0] if text else type(exc).__name__


def _read(fh: h5py.File) -> Characterization:
    rd = _Reader(fh)
    stored_hash = rd.attr(fh, "content_sha256")
    for key in ("protocol_json", "operating_time_sec", "operating_temperature_kelvin"):
        rd.attr(fh, key)
    read_noise = _read_linear(rd, "fit/read_noise", READ_NOISE_TERMS, _READ_NOISE_UNITS)
    corr = rd.group("fit/correlated")
    static = _read_linear(rd, "fit/static", ("c0", "c1", "c2"), {"c0": "1", "c1": "1", "c2": "1"})
    st = rd.group("fit/static")
    fit = rd.group("fit")
    scalars = {name: rd.scalar(fit, name, units) for name, units in _FIT_SCALARS.items()}
    drift = None
    if fit is not None and "drift" in fit:
        g = fit["drift"]
        drift = DriftFit(**{f.name: rd.scalar(g, f.name, "s" if f.name == "reference_time_sec" else "1")
                            for f in dataclasses.fields(DriftFit)})
    temperature = None
    if fit is not None and "temperature" in fit:
        g = fit["temperature"]
        units = {"activation_energy_ev": "eV", "activation_energy_std_error_ev": "eV", "reference_kelvin": "K"}
        temperature = ArrheniusFit(**{f.name: rd.scalar(g, f.name, units.get(f.name, "1")) for f in dataclasses.fields(ArrheniusFit)})
    pi = rd.group("fit/pi_hw")
    pi_fields = {
        "levels": rd.array(pi, "levels", "w"),
        "bin_edges": rd.array(pi, "bin_edges", "w"),
        "counts": rd.array(pi, "counts", "1"),
        "probabilities": rd.array(pi, "probabilities", "1"),
        "w_max": rd.scalar(pi, "w_max", "w"),
        "pseudo_count": rd.scalar(pi, "pseudo_count", "1"),
        "bits": rd.attr(pi, "bits"),
        "source": rd.attr(pi, "source"),
    }
    params = _read_params(rd, rd.group("fit/surrogate"))
    mats_group = rd.group("matrices")
    order = json.loads(rd.attr(mats_group, "order") or "[]")
    matrices = [_read_matrix(rd, mats_group, name) for name in order] if mats_group is not None else []
    static_bins = {k: rd.array(st, k, "1") for k in ("bin_edges_rel", "bin_count", "bin_var_rel", "bin_var_se")}
    corr_var, corr_se = rd.scalar(corr, "var_rel", "y^2"), rd.scalar(corr, "std_error", "y^2")
    rd.check()
    if _content_hash(fh) != stored_hash:
        raise HDF5FormatError(f"{fh.filename}: content does not match its checksum (the file was damaged or edited)")
    try:
        profile, config = read_profile(fh), read_config(fh)
        protocol = CharacterizationProtocol.from_dict(json.loads(rd.attr(fh, "protocol_json")))
    except (TypeError, ValueError) as exc:
        raise HDF5FormatError(f"{fh.filename}: bad provenance: {str(exc).splitlines()[0]}") from None
    try:
        surrogate = SurrogateParams.from_dict(params)
        pi_hw = PiHW(**{**pi_fields, "bits": int(pi_fields["bits"])})
    except (TypeError, ValueError) as exc:
        raise HDF5FormatError(f"{fh.filename}: bad fitted parameters: {str(exc).splitlines()[0]}") from None
    return Characterization(
        profile=profile,
        config=config,
        chip_seed=int(fh.attrs["seed"]),
        protocol=protocol,
        time_sec=float(rd.attr(fh, "operating_time_sec")),
        temperature_kelvin=float(rd.attr(fh, "operating_temperature_kelvin")),
        matrices=tuple(matrices),
        read_noise=read_noise,
        correlated_var_rel=corr_var,
        correlated_var_std_error=corr_se,
        static=static,
        static_bin_edges_rel=static_bins["bin_edges_rel"],
        static_bin_count=static_bins["bin_count"],
        static_bin_var_rel=static_bins["bin_var_rel"],
        static_bin_var_se=static_bins["bin_var_se"],
        drift=drift,
        temperature=temperature,
        pi_hw=pi_hw,
        surrogate_params=surrogate,
        **scalars,
    )


def _read_params(rd: _Reader, g: h5py.Group | None) -> dict[str, Any]:
    if g is None:
        return {}
    none_fields = set(json.loads(rd.attr(g, "none_fields") or "[]"))
    out: dict[str, Any] = {key: rd.attr(g, key) for key in _SURROGATE_ATTRS}
    if out.get("clip_inputs") is not None:
        out["clip_inputs"] = bool(out["clip_inputs"])
    for key, units in _SURROGATE_UNITS.items():
        if key in none_fields:
            out[key] = None
            continue
        value = rd.array(g, key, units)
        if value is not None:
            v = float(value)
            out[key] = int(v) if key in ("tile_rows", "tile_cols", "dac_bits", "adc_bits") else v
    return out


def _read_matrix(rd: _Reader, mats: h5py.Group, name: str) -> MatrixCharacterization:
    if name not in mats:
        rd.missing.append(f"/matrices/{name}")
        return None  # type: ignore[return-value]
    g = mats[name]
    values: dict[str, Any] = {"name": name}
    for key, units in _MATRIX_UNITS.items():
        v = rd.array(g, key, units)
        values[key] = float(v) if v is not None and np.ndim(v) == 0 else v
    for label in ("time_sweep", "temperature_sweep"):
        if label not in g:
            values[label] = None
            continue
        s = g[label]
        quantity = rd.attr(s, "quantity")
        cols = {key: rd.array(s, key, units) for key, units in _SWEEP_UNITS.items()}
        values[label] = SweepTable(quantity=quantity, values=rd.array(s, "values", "s" if quantity == "time_sec" else "K"), **cols)
    return MatrixCharacterization(**values)


def read_surrogate_params(path: str | Path) -> SurrogateParams:
    """Only the surrogate's parameters of a characterization file (with the same checks)."""
    return read_characterization(path).surrogate_params
