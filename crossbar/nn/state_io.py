"""Save and load an analog model: torch state, programmed conductances, device draws and noise streams.

One HDF5 file (written atomically with :func:`crossbar.hdf5io.atomic_h5`, nothing pickled) holds
everything needed to repeat an evaluation on the same simulated chip instance bit for bit: load it into
a model of the same architecture converted with a chip of the same profile, configuration and seed.

File layout (``file_kind = "analog_model"``, ``schema_version = 1``)
--------------------------------------------------------------------
Root attributes
    The provenance of :mod:`crossbar.hdf5io` (``schema_version``, ``package_version``,
    ``created_utc``, ``seed``, ``profile_toml``, ``profile_name``, ``chip_config_json``) for the chip
    shared by the analog layers, plus ``torch_version``.
``/state_dict/<key>``
    Every entry of ``model.state_dict()`` (parameters and buffers, digital layers included), units
    ``"1"``, attribute ``torch_dtype``.
``/analog_layers/<NNNN>``, one group per analog layer in module order
    Attributes ``module_name``, ``layer_type``, ``n_programmings``, ``read_conditions_json``,
    ``programmed`` (bool) and, when programmed, ``spawn_key`` (the matrix's position in the chip's seed
    tree), ``read_rng_state_json`` (the read-noise generator's ``bit_generator.state``) and
    ``weights_changed`` (the torch weights moved on after the last programming: the next forward
    re-programs). Datasets, when programmed (arrays of :meth:`crossbar.ProgrammedMatrix.state_arrays`,
    crossbar orientation (in, out), index 0 = G+, 1 = G-): ``weights`` (out, in), units ``"1"``, the
    programmed digital weights; ``g_target_siemens`` and ``g_programmed_siemens`` (2, in, out), ``"S"``;
    ``siemens_per_weight`` (n_row_tiles, out), ``"S"``; ``nu`` (2, in, out), ``"1"``, drift exponents;
    ``stuck`` (2, in, out), ``"1"``, int8 fault codes.
``/activations/<NNNN>``, one group per :class:`~crossbar.nn.AnalogActivation`
    Attributes ``module_name``, ``activation_config_json``, ``rng_state_json``.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from crossbar.config import ActivationConfig, ChipConfig, config_to_dict
from crossbar.hdf5io import HDF5FormatError, atomic_h5, open_checked, read_array, read_config, read_profile, write_array
from crossbar.nn.control import analog_layers
from crossbar.nn.layers import AnalogActivation, AnalogLayer, ReadConditions

__all__ = ["FILE_KIND", "SCHEMA_VERSION", "load_analog_state", "save_analog_state"]

FILE_KIND = "analog_model"
SCHEMA_VERSION = 1

_UNITS = {
    "weights": "1",
    "g_target_siemens": "S",
    "siemens_per_weight": "S",
    "g_programmed_siemens": "S",
    "nu": "1",
    "stuck": "1",
}
_DESCRIPTIONS = {
    "weights": "programmed digital weights (out, in)",
    "g_target_siemens": "target conductances (G+/G-, in, out)",
    "siemens_per_weight": "mapping scale per tile row and output",
    "g_programmed_siemens": "programmed conductances at t0 (G+/G-, in, out)",
    "nu": "drift exponent per device",
    "stuck": "stuck-at fault code per device (0 working)",
}


def _activations(model: nn.Module) -> list[tuple[str, AnalogActivation]]:
    return [(name, m) for name, m in model.named_modules() if isinstance(m, AnalogActivation)]


def _config_difference(a: ChipConfig, b: ChipConfig) -> str:
    da, db = config_to_dict(a), config_to_dict(b)
    for group in da:
        if isinstance(da[group], dict):
            for key in da[group]:
                if da[group][key] != db[group][key]:
                    return f"{group}.{key} = {da[group][key]!r} vs {db[group][key]!r}"
        elif da[group] != db[group]:
            return f"{group} = {da[group]!r} vs {db[group]!r}"
    return "?"


def save_analog_state(model: nn.Module, path: str | Path) -> Path:
    """Write the model's full state and its programmed chip state to one HDF5 file (atomically).

    Parameters
    ----------
    model : nn.Module
        A model with analog layers, all on chips of one profile, configuration and seed.
    path : path-like
        The file to write; its directory must exist.

    Returns
    -------
    Path
        ``path``.

    Notes
    -----
    Saving neither programs nor draws: layers that were never programmed are saved as such and program
    lazily after loading. The layout is in the module docstring.
    """
    if not isinstance(model, nn.Module):
        raise ValueError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    layers = analog_layers(model)
    if not layers:
        raise ValueError("save_analog_state: the model has no analog layers (convert it with convert_to_analog first)")
    chip = layers[0][1].chip
    for name, layer in layers[1:]:
        other = layer.chip
        if other.profile.toml_text != chip.profile.toml_text or other.config != chip.config or other.seed != chip.seed:
            raise ValueError(
                f"save_analog_state: layer {name!r} is on another chip ({other!r}) than layer {layers[0][0]!r} ({chip!r}); "
                "one file holds one chip"
            )
    tensors: dict[str, np.ndarray] = {}
    dtypes: dict[str, str] = {}
    for key, tensor in model.state_dict().items():
        t = tensor.detach().cpu()
        try:
            tensors[key] = t.numpy()
        except TypeError:
            raise ValueError(f"save_analog_state: state entry {key!r} has dtype {t.dtype}, which HDF5/NumPy cannot store") from None
        dtypes[key] = str(t.dtype)

    path = Path(path)
    with atomic_h5(
        path,
        file_kind=FILE_KIND,
        schema_version=SCHEMA_VERSION,
        profile=chip.profile,
        config=chip.config,
        seed=chip.seed,
        attrs={"torch_version": str(torch.__version__)},  # a TorchVersion (str subclass) h5py cannot store
    ) as fh:
        sd = fh.create_group("state_dict")
        for key, arr in tensors.items():
            write_array(sd, key, arr, units="1", torch_dtype=dtypes[key])
        group = fh.create_group("analog_layers")
        for index, (name, layer) in enumerate(layers):
            g = group.create_group(f"{index:04d}")
            g.attrs["module_name"] = name
            g.attrs["layer_type"] = type(layer).__name__
            g.attrs["n_programmings"] = int(layer.n_programmings)
            g.attrs["read_conditions_json"] = json.dumps(asdict(layer.read_conditions))
            matrix = layer.programmed_matrix
            g.attrs["programmed"] = matrix is not None
            if matrix is None:
                continue
            g.attrs["weights_changed"] = bool(layer.weights_changed())
            g.attrs["spawn_key"] = np.asarray(matrix.spawn_key, dtype=np.int64)
            g.attrs["read_rng_state_json"] = json.dumps(matrix.read_rng.bit_generator.state)
            arrays = matrix.state_arrays()
            for key, units in _UNITS.items():
                write_array(g, key, arrays[key], units=units, description=_DESCRIPTIONS[key])
        acts = fh.create_group("activations")
        for index, (name, act) in enumerate(_activations(model)):
            g = acts.create_group(f"{index:04d}")
            g.attrs["module_name"] = name
            g.attrs["activation_config_json"] = json.dumps(config_to_dict(ChipConfig(activation=act.config))["activation"])
            g.attrs["rng_state_json"] = json.dumps(act.rng.bit_generator.state)
    return path


def load_analog_state(model: nn.Module, path: str | Path) -> None:
    """Load a file of :func:`save_analog_state` into ``model``: weights, buffers, programmed chip state.

    ``model`` must have the saved architecture and its analog layers the saved chip (profile,
    configuration and seed). Nothing is re-programmed or re-drawn: the next evaluation repeats the one
    the saved model would have run, bit for bit. Everything is checked before ``model`` is touched, so
    a failed load leaves it unchanged.

    Raises
    ------
    ValueError
        One line naming the problem: another device profile, chip configuration or seed; other analog
        layers, shapes or state entries; a missing, truncated or foreign file
        (:class:`crossbar.hdf5io.HDF5FormatError`).
    """
    if not isinstance(model, nn.Module):
        raise ValueError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    path = Path(path)
    layers = dict(analog_layers(model))
    activations = dict(_activations(model))
    with open_checked(path, file_kind=FILE_KIND, schema_version=SCHEMA_VERSION) as fh:
        profile = read_profile(fh)
        config = read_config(fh)
        seed = int(fh.attrs["seed"])
        for name, layer in layers.items():
            chip = layer.chip
            if chip.profile.toml_text != profile.toml_text:
                raise ValueError(
                    f"{path}: written with device profile {profile.name!r}, but layer {name!r} is on a chip with profile "
                    f"{chip.profile.name!r} (profiles must match exactly)"
                )
            if chip.config != config:
                raise ValueError(f"{path}: written with another chip configuration than layer {name!r} uses ({_config_difference(config, chip.config)})")
            if chip.seed != seed:
                raise ValueError(f"{path}: written with chip seed {seed}, but layer {name!r} is on a chip with seed {chip.seed}")
        state = _read_state_dict(fh, path)
        saved_layers = _read_layers(fh, path, layers)
        saved_acts = _read_activations(fh, path, activations)

    missing, unexpected = _state_dict_mismatch(model, state)
    if missing or unexpected:
        raise ValueError(f"{path}: state entries do not match the model (missing {missing[:3]}, unexpected {unexpected[:3]})")
    own = model.state_dict()
    for key, tensor in state.items():
        if tuple(own[key].shape) != tuple(tensor.shape):
            raise ValueError(f"{path}: state entry {key!r} has shape {tuple(tensor.shape)}, the model's is {tuple(own[key].shape)}")

    model.load_state_dict(state)
    for name, saved in saved_layers.items():
        layer = layers[name]
        layer.read_conditions = saved["read_conditions"]
        layer._restore(saved["arrays"], saved.get("spawn_key", ()), saved.get("rng_state"), saved["n_programmings"])
    for name, (cfg, rng_state) in saved_acts.items():
        act = activations[name]
        act.config = cfg
        act.rng.bit_generator.state = rng_state


def _read_state_dict(fh: Any, path: Path) -> dict[str, torch.Tensor]:
    if "state_dict" not in fh:
        raise HDF5FormatError(f"{path}: missing group /state_dict")
    group = fh["state_dict"]
    out = {}
    for key in group:
        arr = read_array(group, key, units="1")
        out[key] = torch.from_numpy(np.array(arr))
    return out


def _state_dict_mismatch(model: nn.Module, state: dict[str, torch.Tensor]) -> tuple[list[str], list[str]]:
    own = set(model.state_dict())
    return sorted(own - set(state)), sorted(set(state) - own)


def _read_layers(fh: Any, path: Path, layers: dict[str, AnalogLayer]) -> dict[str, dict[str, Any]]:
    if "analog_layers" not in fh:
        raise HDF5FormatError(f"{path}: missing group /analog_layers")
    saved: dict[str, dict[str, Any]] = {}
    for group_name in sorted(fh["analog_layers"]):
        g = fh["analog_layers"][group_name]
        name = str(g.attrs["module_name"])
        if name not in layers:
            raise ValueError(f"{path}: the file has analog layer {name!r}, the model has none of that name (it has {sorted(layers)})")
        layer = layers[name]
        kind = str(g.attrs["layer_type"])
        if kind != type(layer).__name__:
            raise ValueError(f"{path}: analog layer {name!r} is a {kind} in the file and a {type(layer).__name__} in the model")
        try:
            conditions = ReadConditions(**json.loads(str(g.attrs["read_conditions_json"])))
        except (TypeError, ValueError) as exc:
            raise HDF5FormatError(f"{path}: analog layer {name!r} has bad read conditions: {exc}") from None
        entry: dict[str, Any] = {"read_conditions": conditions, "n_programmings": int(g.attrs["n_programmings"]), "arrays": None}
        if bool(g.attrs["programmed"]):
            arrays = {key: read_array(g, key, units=units) for key, units in _UNITS.items()}
            expected = tuple(layer._weight_matrix().shape)
            if arrays["weights"].shape != expected:
                raise ValueError(f"{path}: analog layer {name!r} was programmed with weights {arrays['weights'].shape}, the model's are {expected}")
            entry["arrays"] = arrays
            entry["spawn_key"] = tuple(int(k) for k in np.asarray(g.attrs["spawn_key"]).ravel())
            entry["rng_state"] = json.loads(str(g.attrs["read_rng_state_json"]))
        saved[name] = entry
    absent = sorted(set(layers) - set(saved))
    if absent:
        raise ValueError(f"{path}: the model's analog layer(s) {absent} are not in the file")
    return saved


def _read_activations(fh: Any, path: Path, activations: dict[str, AnalogActivation]) -> dict[str, tuple[ActivationConfig, dict]]:
    saved: dict[str, tuple[ActivationConfig, dict]] = {}
    group = fh.get("activations")
    for group_name in sorted(group) if group is not None else []:
        g = group[group_name]
        name = str(g.attrs["module_name"])
        if name not in activations:
            raise ValueError(f"{path}: the file has analog activation {name!r}, the model has none of that name")
        cfg = ActivationConfig(**json.loads(str(g.attrs["activation_config_json"])))
        saved[name] = (cfg, json.loads(str(g.attrs["rng_state_json"])))
    absent = sorted(set(activations) - set(saved))
    if absent:
        raise ValueError(f"{path}: the model's analog activation(s) {absent} are not in the file")
    return saved
