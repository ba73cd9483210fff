"""Device profiles: the physics of one memory technology, read from a TOML file.

A profile gives every device-level parameter the chip needs (conductance range, programming noise,
read noise, drift, temperature dependence, stuck-at faults, I-V nonlinearity) and, in its ``[source]``
table, the publication and figure each number comes from. Shipped profiles live in the package
``crossbar.device_profiles`` (the repository's top-level ``device_profiles/`` folder); users point at
their own file with :func:`load_profile`.

Every field carries its unit in its name (``_siemens``, ``_sec``, ``_kelvin``, ``_ev``, ``_per_volt``,
``_rel`` for dimensionless ratios, ``_prob`` for probabilities). Loading validates everything: unknown
keys, implausible magnitudes (the usual symptom of a value in the wrong unit), ``g_min >= g_max`` and
negative spreads give a :class:`ProfileError` whose one-line message names the file, the field and the
value.
"""

from __future__ import annotations

import math
import tomllib
from dataclasses import dataclass, field, fields
from importlib import resources
from pathlib import Path
from types import MappingProxyType
from typing import Any, Mapping

__all__ = [
    "SCHEMA_VERSION",
    "ConductanceRange",
    "DeviceProfile",
    "Drift",
    "IVCurve",
    "ProfileError",
    "ProgrammingNoise",
    "ReadNoise",
    "Source",
    "StuckAtFaults",
    "Temperature",
    "list_profiles",
    "load_profile",
    "parse_profile",
]

SCHEMA_VERSION = 1
"""Version of the profile TOML schema this package reads."""

BOLTZMANN_EV_PER_KELVIN = 8.617333262e-5
"""Boltzmann constant in eV/K (CODATA 2018, exact by SI definition)."""


class ProfileError(ValueError):
    """A device profile is malformed; the message is one line naming file, field and value."""


# --------------------------------------------------------------------------------------------------
# Parameter groups. Plausibility bounds (``_BOUNDS``) catch values given in the wrong unit, e.g. a
# conductance of 25 (siemens) meant as 25 microsiemens.
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class ConductanceRange:
    """Programmable conductance window of one device."""

    g_min_siemens: float
    """Lowest target conductance used for mapping (the off state), S."""
    g_max_siemens: float
    """Highest target conductance used for mapping (the fully-on state), S."""

    def __post_init__(self) -> None:
        _check_fields(self)
        if self.g_min_siemens >= self.g_max_siemens:
            raise ValueError(
                f"conductance.g_min_siemens = {self.g_min_siemens:g} S must be < "
                f"conductance.g_max_siemens = {self.g_max_siemens:g} S"
            )


@dataclass(frozen=True, kw_only=True)
class ProgrammingNoise:
    """Static errors drawn once per device when the chip is programmed.

    The programmed conductance is ``G_p = (G_T + sigma(G_T) z1) (1 + mismatch_std_rel z2)``, clipped
    at zero, with ``sigma(G_T) = max(0, sum_k poly_siemens[k] (G_T / g_max)^k)`` and z1, z2 ~ N(0, 1).
    """

    poly_siemens: tuple[float, ...] = (0.0,)
    """Coefficients of the programming-noise standard deviation, a polynomial in G_T / g_max, S."""
    mismatch_std_rel: float = 0.0
    """Relative std of the static device-to-device gain mismatch left after write-verify."""

    def __post_init__(self) -> None:
        if not isinstance(self.poly_siemens, (list, tuple)) or not all(
            isinstance(c, (int, float)) and not isinstance(c, bool) for c in self.poly_siemens
        ):
            raise ValueError(f"programming.poly_siemens = {self.poly_siemens!r} must be a list of numbers (S)")
        object.__setattr__(self, "poly_siemens", tuple(float(c) for c in self.poly_siemens))
        if len(self.poly_siemens) == 0:
            raise ValueError("programming.poly_siemens = [] needs at least one coefficient (S)")
        for c in self.poly_siemens:
            if not math.isfinite(c) or abs(c) > 1e-3:
                raise ValueError(
                    f"programming.poly_siemens has coefficient {c:g} S; coefficients are in siemens "
                    "and must be finite with magnitude <= 1e-3 S (is the unit microsiemens?)"
                )
        _check_fields(self)


@dataclass(frozen=True, kw_only=True)
class StuckAtFaults:
    """Devices that ignore programming and sit at one end of the window."""

    stuck_at_gmin_prob: float = 0.0
    """Probability that a device is stuck at g_min (stuck off)."""
    stuck_at_gmax_prob: float = 0.0
    """Probability that a device is stuck at g_max (stuck on)."""

    def __post_init__(self) -> None:
        _check_fields(self)
        total = self.stuck_at_gmin_prob + self.stuck_at_gmax_prob
        if total > 1.0:
            raise ValueError(f"faults: stuck_at_gmin_prob + stuck_at_gmax_prob = {total:g} exceeds 1")


@dataclass(frozen=True, kw_only=True)
class ReadNoise:
    """Fresh noise at every read (every MVM), independent per device.

    Variance of a device read at conductance G and time t after programming (Notes of
    :func:`crossbar.read_noise.read_noise_variance`)::

        var(G, t) = alpha_siemens * G + (G Q(G))^2 ln((t + t_read) / (2 t_read)),
        Q(G) = min(flicker_q_rel * (G / flicker_g_ref_siemens)^(-flicker_exponent), flicker_q_max_rel)

    The first term is the seed model (variance proportional to |G|); the second the 1/f model of
    Nandakumar et al. (2019) for PCM.
    """

    alpha_siemens: float = 0.0
    """Variance per unit conductance, S (var = alpha G has units S^2)."""
    flicker_q_rel: float = 0.0
    """1/f noise amplitude Q at the reference conductance (dimensionless); 0 disables 1/f noise."""
    flicker_g_ref_siemens: float = 1e-6
    """Reference conductance of the 1/f amplitude law, S."""
    flicker_exponent: float = 0.0
    """Exponent of the 1/f amplitude law Q ~ G^(-exponent)."""
    flicker_q_max_rel: float = 1.0
    """Upper bound on Q."""
    read_time_sec: float = 250e-9
    """Duration of one read (integration time), s; sets the low end of the 1/f band."""

    def __post_init__(self) -> None:
        _check_fields(self)


@dataclass(frozen=True, kw_only=True)
class Drift:
    """Conductance drift G(t) = G(t0) (t / t0)^(-nu), nu ~ N(mu_nu, sigma_nu) per device, clipped at 0.

    The mean and spread of nu may depend on the target conductance G_T of the device (the PCM model
    of Nandakumar et al. 2019), as a clipped linear function of ln(G_T / nu_g_ref_siemens)::

        mu_nu(G_T)    = clip(nu_mean + nu_mean_log_slope ln(G_T / G_ref), nu_mean_min, nu_mean_max)
        sigma_nu(G_T) = clip(nu_std  + nu_std_log_slope  ln(G_T / G_ref), nu_std_min,  nu_std_max)

    With both slopes 0 (the default) every device has mu_nu = nu_mean and sigma_nu = nu_std (the clip
    bounds are part of the conductance-dependent law and are then not applied).
    """

    nu_mean: float = 0.0
    """Mean drift exponent; with a conductance-dependent law, its value at nu_g_ref_siemens before clipping."""
    nu_std: float = 0.0
    """Device-to-device std of the drift exponent; with a conductance-dependent law, at nu_g_ref_siemens."""
    t0_sec: float = 1.0
    """Reference time after programming at which the programmed state is defined, s."""
    nu_g_ref_siemens: float = 0.0
    """Reference conductance of the conductance-dependent law, S; must be > 0 when a slope is nonzero."""
    nu_mean_log_slope: float = 0.0
    """Change of the mean drift exponent per unit of ln(G_T / nu_g_ref_siemens); 0: same mean for all G_T."""
    nu_std_log_slope: float = 0.0
    """Change of the drift-exponent std per unit of ln(G_T / nu_g_ref_siemens); 0: same std for all G_T."""
    nu_mean_min: float = 0.0
    """Lower clip of the conductance-dependent mean drift exponent (unused when both slopes are 0)."""
    nu_mean_max: float = 1.0
    """Upper clip of the conductance-dependent mean drift exponent (unused when both slopes are 0)."""
    nu_std_min: float = 0.0
    """Lower clip of the conductance-dependent drift-exponent std (unused when both slopes are 0)."""
    nu_std_max: float = 1.0
    """Upper clip of the conductance-dependent drift-exponent std (unused when both slopes are 0)."""

    def __post_init__(self) -> None:
        _check_fields(self)
        for lo, hi in (("nu_mean_min", "nu_mean_max"), ("nu_std_min", "nu_std_max")):
            if getattr(self, lo) > getattr(self, hi):
                raise ValueError(
                    f"drift.{lo} = {getattr(self, lo):g} must be <= drift.{hi} = {getattr(self, hi):g}"
                )
        if self.conductance_dependent and self.nu_g_ref_siemens <= 0:
            raise ValueError(
                f"drift.nu_g_ref_siemens = {self.nu_g_ref_siemens:g} S must be > 0 S when "
                "drift.nu_mean_log_slope or drift.nu_std_log_slope is nonzero"
            )

    @property
    def conductance_dependent(self) -> bool:
        """Whether the drift-exponent distribution depends on the target conductance."""
        return self.nu_mean_log_slope != 0.0 or self.nu_std_log_slope != 0.0


@dataclass(frozen=True, kw_only=True)
class Temperature:
    """Temperature dependence of conductance and of the drift rate.

    Conductance: ``G(T) = G(T_ref) exp(-(Ea_G / k_B)(1/T - 1/T_ref)) (1 + tcr (T - T_ref))``.
    Drift: time-temperature superposition, ``t_eff = t exp((Ea_drift / k_B)(1/T_ref - 1/T))``.
    """

    reference_kelvin: float = 300.0
    """Temperature at which the device was programmed and characterized, K."""
    conductance_activation_energy_ev: float = 0.0
    """Activation energy of the conductance (semiconducting amorphous phase), eV."""
    conductance_tcr_per_kelvin: float = 0.0
    """Linear temperature coefficient of resistance-type term (metallic filaments), 1/K."""
    drift_activation_energy_ev: float = 0.0
    """Activation energy of structural relaxation that speeds drift at high temperature, eV."""

    def __post_init__(self) -> None:
        _check_fields(self)


@dataclass(frozen=True, kw_only=True)
class IVCurve:
    """Device current-voltage law ``I = G sinh(a V) / a`` (ohmic, ``I = G V``, as a -> 0)."""

    sinh_alpha_per_volt: float = 0.0
    """Nonlinearity a, 1/V; 0 is an ohmic device."""

    def __post_init__(self) -> None:
        _check_fields(self)


@dataclass(frozen=True, kw_only=True)
class Source:
    """Where the numbers come from: references and, per field, the paper and figure."""

    summary: str
    """One paragraph: the technology, the devices measured and the conditions."""
    references: Mapping[str, str]
    """Short key -> full citation with DOI."""
    fields: Mapping[str, str]
    """``"table.field"`` -> reference key, figure or table, and any conversion applied."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "references", MappingProxyType(dict(self.references)))
        object.__setattr__(self, "fields", MappingProxyType(dict(self.fields)))


@dataclass(frozen=True, kw_only=True)
class DeviceProfile:
    """Everything the chip needs to know about one device technology."""

    name: str
    """Short identifier, e.g. ``"pcm"``."""
    technology: str
    """Human-readable technology, e.g. ``"Phase-change memory (doped Ge2Sb2Te5)"``."""
    description: str
    conductance: ConductanceRange
    programming: ProgrammingNoise = field(default_factory=ProgrammingNoise)
    faults: StuckAtFaults = field(default_factory=StuckAtFaults)
    read_noise: ReadNoise = field(default_factory=ReadNoise)
    drift: Drift = field(default_factory=Drift)
    temperature: Temperature = field(default_factory=Temperature)
    iv: IVCurve = field(default_factory=IVCurve)
    source: Source
    toml_text: str = ""
    """The exact TOML text the profile was read from (recorded in HDF5 provenance)."""
    path: str = ""
    """The file the profile was read from, or ``""`` when built in code."""

    @property
    def g_range_siemens(self) -> float:
        """Usable conductance window ``g_max - g_min``, S."""
        return self.conductance.g_max_siemens - self.conductance.g_min_siemens


# Plausible magnitude of each numeric field: (low, high), inclusive. Outside means the value is
# almost certainly in the wrong unit or mistyped; the message says which unit is expected.
_BOUNDS: dict[str, tuple[float, float]] = {
    "g_min_siemens": (0.0, 1e-2),
    "g_max_siemens": (1e-12, 1e-2),
    "mismatch_std_rel": (0.0, 1.0),
    "stuck_at_gmin_prob": (0.0, 1.0),
    "stuck_at_gmax_prob": (0.0, 1.0),
    "alpha_siemens": (0.0, 1e-3),
    "flicker_q_rel": (0.0, 10.0),
    "flicker_g_ref_siemens": (1e-12, 1e-2),
    "flicker_exponent": (0.0, 5.0),
    "flicker_q_max_rel": (0.0, 10.0),
    "read_time_sec": (1e-12, 1.0),
    "nu_mean": (0.0, 1.0),
    "nu_std": (0.0, 1.0),
    "t0_sec": (1e-9, 1e6),
    "nu_g_ref_siemens": (0.0, 1e-2),
    "nu_mean_log_slope": (-1.0, 1.0),
    "nu_std_log_slope": (-1.0, 1.0),
    "nu_mean_min": (0.0, 1.0),
    "nu_mean_max": (0.0, 1.0),
    "nu_std_min": (0.0, 1.0),
    "nu_std_max": (0.0, 1.0),
    "reference_kelvin": (1.0, 1000.0),
    "conductance_activation_energy_ev": (0.0, 3.0),
    "conductance_tcr_per_kelvin": (-0.1, 0.1),
    "drift_activation_energy_ev": (0.0, 3.0),
    "sinh_alpha_per_volt": (0.0, 100.0),
}

_UNIT_HINT = {
    "_siemens": "S",
    "_sec": "s",
    "_kelvin": "K",
    "_ev": "eV",
    "_per_kelvin": "1/K",
    "_per_volt": "1/V",
}


def _unit_of(name: str) -> str:
    for suffix, unit in sorted(_UNIT_HINT.items(), key=lambda kv: -len(kv[0])):
        if name.endswith(suffix):
            return " " + unit
    return ""


def _check_fields(obj: Any) -> None:
    """Type- and range-check every float field of a parameter group against ``_BOUNDS``."""
    group = _GROUP_NAMES.get(type(obj).__name__, type(obj).__name__)
    for f in fields(obj):
        if f.name not in _BOUNDS:
            continue
        value = getattr(obj, f.name)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"{group}.{f.name} = {value!r} must be a number{_unit_of(f.name)}")
        value = float(value)
        object.__setattr__(obj, f.name, value)
        lo, hi = _BOUNDS[f.name]
        if not math.isfinite(value) or value < lo or value > hi:
            raise ValueError(
                f"{group}.{f.name} = {value:g}{_unit_of(f.name)} is outside the plausible range "
                f"[{lo:g}, {hi:g}]{_unit_of(f.name)} (negative spread, or a value in the wrong unit?)"
            )


# TOML table name -> parameter-group class.
_TABLES: dict[str, type] = {
    "conductance": ConductanceRange,
    "programming": ProgrammingNoise,
    "faults": StuckAtFaults,
    "read_noise": ReadNoise,
    "drift": Drift,
    "temperature": Temperature,
    "iv": IVCurve,
}
_GROUP_NAMES = {cls.__name__: table for table, cls in _TABLES.items()}
_TOP_LEVEL_KEYS = {"schema_version", "name", "technology", "description", "source"}


def parse_profile(text: str, *, origin: str = "<string>") -> DeviceProfile:
    """Build a :class:`DeviceProfile` from TOML text, validating every key and value.

    Parameters
    ----------
    text : str
        The TOML document.
    origin : str
        Name used in error messages (usually the file path).

    Raises
    ------
    ProfileError
        On any malformed content; the message names ``origin``, the field and the value.
    """
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ProfileError(f"{origin}: not valid TOML ({exc})") from None

    def fail(msg: str) -> ProfileError:
        return ProfileError(f"{origin}: {msg}")

    version = data.get("schema_version")
    if version != SCHEMA_VERSION:
        raise fail(f"schema_version = {version!r}, this package reads schema_version = {SCHEMA_VERSION}")
    unknown = set(data) - _TOP_LEVEL_KEYS - set(_TABLES)
    if unknown:
        raise fail(
            f"unknown key {sorted(unknown)[0]!r} at top level "
            f"(expected {', '.join(sorted(_TOP_LEVEL_KEYS | set(_TABLES)))})"
        )
    for key in ("name", "technology", "description"):
        if not isinstance(data.get(key), str) or not data[key].strip():
            raise fail(f"{key} must be a non-empty string, got {data.get(key)!r}")
    if "conductance" not in data:
        raise fail("missing table [conductance] (g_min_siemens, g_max_siemens)")

    groups: dict[str, Any] = {}
    for table, cls in _TABLES.items():
        if table not in data:
            continue
        values = data[table]
        if not isinstance(values, dict):
            raise fail(f"{table} must be a table [{table}], got {values!r}")
        allowed = {f.name for f in fields(cls)}
        for key in values:
            if key not in allowed:
                raise fail(
                    f"unknown key {key!r} in [{table}] (expected one of {', '.join(sorted(allowed))}; "
                    "units go in the key name, base SI)"
                )
        try:
            groups[table] = cls(**values)
        except (ValueError, TypeError) as exc:
            raise fail(str(exc)) from None

    if "source" not in data:
        raise fail("missing table [source]: every number needs a paper and figure")
    source = _parse_source(data["source"], data, fail)

    return DeviceProfile(
        name=data["name"],
        technology=data["technology"],
        description=data["description"],
        source=source,
        toml_text=text,
        path=origin if origin != "<string>" else "",
        **groups,
    )


def _parse_source(raw: Any, data: Mapping[str, Any], fail: Any) -> Source:
    if not isinstance(raw, dict):
        raise fail("[source] must be a table")
    allowed = {"summary", "references", "fields"}
    for key in raw:
        if key not in allowed:
            raise fail(f"unknown key {key!r} in [source] (expected summary, references, fields)")
    summary = raw.get("summary")
    if not isinstance(summary, str) or not summary.strip():
        raise fail("[source] summary must be a non-empty string")
    refs = raw.get("references", {})
    cited = raw.get("fields", {})
    if not isinstance(refs, dict) or not refs or not all(isinstance(v, str) for v in refs.values()):
        raise fail("[source.references] must map short keys to citation strings")
    if not isinstance(cited, dict) or not all(isinstance(v, str) for v in cited.values()):
        raise fail("[source.fields] must map 'table.field' to a citation string")
    # Every number given in the file must say where it comes from.
    for table in _TABLES:
        for key in data.get(table, {}):
            dotted = f"{table}.{key}"
            if dotted not in cited:
                raise fail(f"[source.fields] has no entry for {dotted!r}: every number needs its source")
    for dotted, text in cited.items():
        table, _, key = dotted.partition(".")
        if table not in data or key not in data.get(table, {}):
            raise fail(f"[source.fields] cites {dotted!r}, which the profile does not set")
        if not any(ref in text for ref in refs):
            raise fail(f"[source.fields] {dotted!r} = {text!r} names none of the references {sorted(refs)}")
    return Source(summary=summary, references=refs, fields=cited)


def _shipped_dir() -> Any:
    try:
        return resources.files("crossbar.device_profiles")
    except ModuleNotFoundError:
        # A source checkout on sys.path without ``pip install``: the profiles sit beside the package.
        return Path(__file__).resolve().parent.parent / "device_profiles"


def list_profiles() -> list[str]:
    """Names of the profiles shipped with the package (sorted)."""
    return sorted(p.name[: -len(".toml")] for p in _shipped_dir().iterdir() if p.name.endswith(".toml"))


def load_profile(name_or_path: str | Path) -> DeviceProfile:
    """Load a shipped profile by name (``"pcm"``) or any profile file by path.

    Parameters
    ----------
    name_or_path : str or path-like
        A shipped profile name (see :func:`list_profiles`) or a path to a ``.toml`` file.

    Raises
    ------
    ProfileError
        If the file does not exist or is malformed.
    """
    if isinstance(name_or_path, DeviceProfile):
        return name_or_path
    text_name = str(name_or_path)
    path = Path(text_name)
    if path.suffix == ".toml" or path.exists() or "/" in text_name:
        if not path.is_file():
            raise ProfileError(f"{text_name}: no such profile file")
        return parse_profile(path.read_text(encoding="utf-8"), origin=str(path))
    shipped = _shipped_dir() / f"{text_name}.toml"
    if not shipped.is_file():
        raise ProfileError(
            f"{text_name}: no shipped profile of that name (shipped: {', '.join(list_profiles())}); "
            "pass a path to a .toml file for your own"
        )
    return parse_profile(shipped.read_text(encoding="utf-8"), origin=f"device_profiles/{text_name}.toml")
