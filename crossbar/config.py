"""Chip configuration: tiles, converters, activation noise, and which stages are on.

The device physics lives in a :class:`~crossbar.profiles.DeviceProfile`; everything here describes the
circuit around the devices and the simulation switches. All groups are frozen keyword-only dataclasses;
variants come from :func:`dataclasses.replace`.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field, fields

from crossbar._checks import check_enum, check_float, check_int

__all__ = [
    "ADCConfig",
    "Activation",
    "ActivationConfig",
    "ChipConfig",
    "CircuitConfig",
    "DACConfig",
    "DifferentialReadout",
    "InputRange",
    "NoiseKind",
    "ReadNoiseSampling",
    "ScaleMode",
    "Stages",
    "TileConfig",
    "config_from_dict",
    "config_to_dict",
]

MAX_CONVERTER_BITS = 24
"""Converters finer than this cannot be represented in float32; use ``bits=None`` for ideal."""


class ScaleMode(enum.Enum):
    """How weights are scaled to conductances."""

    PER_TILE = "per_tile"
    """One scale per tile: max |W| over the tile maps to g_max - g_min."""
    PER_COLUMN = "per_column"
    """One scale per tile column (output): max |W| of that column within the tile maps to the window."""


class DifferentialReadout(enum.Enum):
    """Where the differential pair G+ - G- is subtracted."""

    ANALOG = "analog"
    """Currents of the G+ and G- columns are subtracted before one ADC per output column."""
    DIGITAL = "digital"
    """Each array has its own ADC per column; the codes are subtracted digitally (two ADC reads)."""


class InputRange(enum.Enum):
    """How the DAC input range is set."""

    PER_SAMPLE_ABSMAX = "per_sample_absmax"
    """Each input vector is scaled by its own max |x| (no clipping; undone digitally)."""
    FIXED = "fixed"
    """A fixed range [-input_max, input_max]; values outside are clipped."""


class ReadNoiseSampling(enum.Enum):
    """How fresh read noise is sampled for a batch of input vectors."""

    PER_SAMPLE = "per_sample"
    """Exact: every input vector is one MVM with its own read-noise draw. Output noise of sample b,
    column i is N(0, sum_j var_ji V_bj^2), computed with one extra GEMM."""
    PER_BATCH = "per_batch"
    """Approximate, faster: one weight-noise draw shared by every vector of a call. Each output has the
    right marginal distribution, but outputs within one call are correlated."""


class Activation(enum.Enum):
    """Activation function applied by the analog periphery after the digital stage."""

    IDENTITY = "identity"
    RELU = "relu"
    SIGMOID = "sigmoid"
    TANH = "tanh"


class NoiseKind(enum.Enum):
    """How activation noise enters."""

    ADDITIVE = "additive"
    """y + sigma n."""
    MULTIPLICATIVE = "multiplicative"
    """y (1 + sigma n)."""


@dataclass(frozen=True, kw_only=True)
class TileConfig:
    """Geometry and drive of one crossbar tile (a pair of identical arrays for G+ and G-).

    Rows are word lines, driven by the DACs with the inputs; columns are bit lines, read by the ADCs.
    A weight matrix W (out x in) is stored transposed: input j drives row j, output i is read on column i.
    """

    rows: int = 256
    """Word lines per tile (inputs per tile)."""
    cols: int = 256
    """Bit lines per tile (outputs per tile)."""
    read_voltage_volt: float = 0.2
    """Read voltage applied for a full-scale input, V."""
    scale_mode: ScaleMode = ScaleMode.PER_COLUMN
    """How weights map to conductances."""
    differential: DifferentialReadout = DifferentialReadout.ANALOG
    """Where G+ - G- is formed."""

    def __post_init__(self) -> None:
        check_int(self, "rows", 1, 1 << 16)
        check_int(self, "cols", 1, 1 << 16)
        check_float(self, "read_voltage_volt", 0.0, 5.0, " V", open_low=True)
        check_enum(self, "scale_mode", ScaleMode)
        check_enum(self, "differential", DifferentialReadout)


@dataclass(frozen=True, kw_only=True)
class DACConfig:
    """Input digital-to-analog converters (one per row)."""

    bits: int | None = 8
    """Resolution; a signed mid-tread quantizer with 2^bits - 1 levels. ``None``: ideal."""
    range_mode: InputRange = InputRange.PER_SAMPLE_ABSMAX
    """How the input range is chosen."""
    input_max: float = 1.0
    """Full-scale input for ``InputRange.FIXED`` (in the units of x)."""

    def __post_init__(self) -> None:
        check_int(self, "bits", 2, MAX_CONVERTER_BITS, allow_none=True, none_means="ideal")
        check_enum(self, "range_mode", InputRange)
        check_float(self, "input_max", 0.0, 1e30, open_low=True)


@dataclass(frozen=True, kw_only=True)
class ADCConfig:
    """Output analog-to-digital converters (one per column and tile) with their sense amplifiers.

    Currents are expressed in units of ``I_dev = (g_max - g_min) V_read``, the current of one device at
    full window and full input. With per-column scaling this is the unit "max |w| times max |x|", so
    ``full_scale_rel = 12`` equals aihwkit's default ``out_bound = 12`` and ``output_noise_std_rel =
    0.06`` its default ``out_noise`` (IBM aihwkit ``IOParameters`` documentation).
    """

    bits: int | None = 8
    """Resolution; a signed mid-tread quantizer with 2^bits - 1 levels. ``None``: ideal."""
    full_scale_rel: float = 12.0
    """Clipping bound of the column current, in units of I_dev; currents beyond +-full scale clip."""
    output_noise_std_rel: float = 0.06
    """Std of additive Gaussian output noise (sense amplifier, ADC), in units of I_dev, per read."""

    def __post_init__(self) -> None:
        check_int(self, "bits", 2, MAX_CONVERTER_BITS, allow_none=True, none_means="ideal")
        check_float(self, "full_scale_rel", 0.0, 1e6, open_low=True)
        check_float(self, "output_noise_std_rel", 0.0, 1e6)


@dataclass(frozen=True, kw_only=True)
class ActivationConfig:
    """Analog activation after the digital stage, and the noise it adds.

    Noise is Gaussian: correlated noise is one draw per input vector shared by every neuron of the layer,
    uncorrelated noise one draw per neuron; both may be on. Additive: ``y + s n``; multiplicative:
    ``y (1 + s n)``.
    """

    function: Activation = Activation.IDENTITY
    """Activation applied before the noise."""
    kind: NoiseKind = NoiseKind.ADDITIVE
    """Additive or multiplicative noise."""
    uncorrelated_std_rel: float = 0.0
    """Std of per-neuron noise, in units of the activation output (dimensionless)."""
    correlated_std_rel: float = 0.0
    """Std of the per-sample noise shared by all neurons, in units of the activation output."""

    def __post_init__(self) -> None:
        check_enum(self, "function", Activation)
        check_enum(self, "kind", NoiseKind)
        check_float(self, "uncorrelated_std_rel", 0.0, 1e6)
        check_float(self, "correlated_std_rel", 0.0, 1e6)


@dataclass(frozen=True, kw_only=True)
class Stages:
    """Switches for every stage of the MVM; all ``False`` gives the ideal product W x."""

    programming_noise: bool = True
    """Programming noise drawn once at programming (profile ``[programming] poly_siemens``)."""
    mismatch: bool = True
    """Static device-to-device gain mismatch (profile ``mismatch_std_rel``)."""
    stuck_at_faults: bool = True
    """Devices stuck at g_min or g_max (profile ``[faults]``)."""
    drift: bool = True
    """Conductance drift with time since programming (profile ``[drift]``)."""
    temperature: bool = True
    """Temperature dependence of conductance and drift (profile ``[temperature]``)."""
    read_noise: bool = True
    """Fresh read noise at every MVM (profile ``[read_noise]``)."""
    dac: bool = True
    """Input quantization and clipping (``DACConfig``)."""
    adc: bool = True
    """Output quantization and clipping (``ADCConfig``)."""
    output_noise: bool = True
    """Additive output noise of the sense amplifiers (``ADCConfig.output_noise_std_rel``)."""
    activation_noise: bool = True
    """Noise after the activation (``ActivationConfig``)."""
    drift_compensation: bool = False
    """Global drift compensation: a calibration read per tile rescales outputs digitally."""
    ir_drop: bool = False
    """Circuit-level IR drop: word-line and bit-line wire, driver and sense resistance solved by nodal
    analysis (``CircuitConfig``, :mod:`crossbar.irdrop`). Off by default (opt-in, as in aihwkit and
    CrossSim): extracting a tile's effective conductance matrix costs about a second per 256 x 256 tile
    and read state, and devices with a nonlinear I-V need a Newton solve per input vector."""

    def __post_init__(self) -> None:
        for f in fields(self):
            if not isinstance(getattr(self, f.name), bool):
                raise ValueError(f"Stages.{f.name} = {getattr(self, f.name)!r} must be True or False")

    @classmethod
    def all_off(cls) -> Stages:
        """Every stage off: the chip computes W x (+ bias) to float precision."""
        return cls(**{f.name: False for f in fields(cls)})

    @classmethod
    def only(cls, *names: str) -> Stages:
        """Only the named stages on, e.g. ``Stages.only("read_noise", "adc")``."""
        known = {f.name for f in fields(cls)}
        for name in names:
            if name not in known:
                raise ValueError(f"unknown stage {name!r}; stages are {', '.join(sorted(known))}")
        return cls(**{f.name: f.name in names for f in fields(cls)})


@dataclass(frozen=True, kw_only=True)
class CircuitConfig:
    """The resistor mesh around the devices of a tile, used when ``Stages.ir_drop`` is on.

    Each word line is driven at one end (next to column 0) by its DAC driver; each bit line ends in a
    virtual-ground transimpedance amplifier (after the last row). A line has one wire segment per cell
    pitch: the driver reaches the first cell through ``driver_ohm + word_line_segment_ohm``, the last cell
    of a bit line reaches the amplifier through ``bit_line_segment_ohm + sense_ohm``. All zero gives the
    ideal product exactly. Physics and solvers: :mod:`crossbar.irdrop`.
    """

    word_line_segment_ohm: float = 0.35
    """Word-line wire resistance per cell pitch, ohm. Default: IBM aihwkit's ``IOParameters``
    (``ir_drop_g_ratio`` is computed "with ... 0.35 Ohm wire resistance" from one cell to the next,
    aihwkit documentation, ``aihwkit.simulator.parameters.io``)."""
    bit_line_segment_ohm: float = 0.35
    """Bit-line wire resistance per cell pitch, ohm (same source as ``word_line_segment_ohm``)."""
    driver_ohm: float = 0.0
    """Output resistance of each word-line driver (DAC buffer), ohm. 0: ideal driver (no published value
    adopted; aihwkit and CrossSim model none)."""
    sense_ohm: float = 0.0
    """Input resistance of each bit line's virtual ground (sense amplifier), ohm. 0: ideal virtual
    ground (no published value adopted)."""
    newton_tolerance_rel: float = 1e-10
    """Per-input mesh solves (nonlinear devices, node voltages) stop when the largest KCL residual, as a
    voltage error in resistance form, is below this fraction of the largest input voltage."""
    newton_max_iterations: int = 50
    """Cap on Newton iterations per input vector; more raises ``RuntimeError``."""

    def __post_init__(self) -> None:
        for name in ("word_line_segment_ohm", "bit_line_segment_ohm", "driver_ohm", "sense_ohm"):
            check_float(self, name, 0.0, 1e9, " ohm")
        check_float(self, "newton_tolerance_rel", 0.0, 1e-2, open_low=True)
        check_int(self, "newton_max_iterations", 1, 10_000)

    @property
    def is_ideal(self) -> bool:
        """Whether every resistance is zero (the mesh is the ideal crossbar)."""
        return self.word_line_segment_ohm == 0 and self.bit_line_segment_ohm == 0 and self.driver_ohm == 0 and self.sense_ohm == 0


@dataclass(frozen=True, kw_only=True)
class ChipConfig:
    """Everything about the chip that is not the device technology."""

    tile: TileConfig = field(default_factory=TileConfig)
    dac: DACConfig = field(default_factory=DACConfig)
    adc: ADCConfig = field(default_factory=ADCConfig)
    activation: ActivationConfig = field(default_factory=ActivationConfig)
    stages: Stages = field(default_factory=Stages)
    circuit: CircuitConfig = field(default_factory=CircuitConfig)
    """Wire, driver and sense resistances of the tiles (used when ``stages.ir_drop`` is on)."""
    read_noise_sampling: ReadNoiseSampling = ReadNoiseSampling.PER_SAMPLE
    """Exact per-vector read noise (default) or one draw shared by a batch."""

    def __post_init__(self) -> None:
        for name, cls in (
            ("tile", TileConfig),
            ("dac", DACConfig),
            ("adc", ADCConfig),
            ("activation", ActivationConfig),
            ("stages", Stages),
            ("circuit", CircuitConfig),
        ):
            if not isinstance(getattr(self, name), cls):
                raise ValueError(f"ChipConfig.{name} must be a {cls.__name__}, got {getattr(self, name)!r}")
        check_enum(self, "read_noise_sampling", ReadNoiseSampling)

    @classmethod
    def ideal(cls) -> ChipConfig:
        """Every stage off."""
        return cls(stages=Stages.all_off())


_GROUPS: dict[str, type] = {
    "tile": TileConfig,
    "dac": DACConfig,
    "adc": ADCConfig,
    "activation": ActivationConfig,
    "stages": Stages,
    "circuit": CircuitConfig,
}


def config_to_dict(config: ChipConfig) -> dict:
    """A plain, JSON/TOML-serializable dict of a :class:`ChipConfig` (enums as their values).

    ``None`` values (ideal converters) are kept as ``None``; TOML writers should omit them.
    """
    if not isinstance(config, ChipConfig):
        raise ValueError(f"config must be a ChipConfig, got {type(config).__name__}")
    out: dict = {}
    for name in _GROUPS:
        group = getattr(config, name)
        out[name] = {f.name: (v.value if isinstance(v, enum.Enum) else v) for f in fields(group) for v in [getattr(group, f.name)]}
    out["read_noise_sampling"] = config.read_noise_sampling.value
    return out


def config_from_dict(data: dict, *, origin: str = "config") -> ChipConfig:
    """Build a :class:`ChipConfig` from :func:`config_to_dict` output or a TOML table.

    Missing groups and fields take their defaults; unknown keys raise ``ValueError`` naming ``origin``.
    """
    if not isinstance(data, dict):
        raise ValueError(f"{origin}: chip configuration must be a table, got {type(data).__name__}")
    unknown = set(data) - set(_GROUPS) - {"read_noise_sampling"}
    if unknown:
        raise ValueError(f"{origin}: unknown chip configuration key {sorted(unknown)[0]!r} (expected {', '.join(sorted(_GROUPS))}, read_noise_sampling)")
    kwargs: dict = {}
    for name, cls in _GROUPS.items():
        if name not in data:
            continue
        table = data[name]
        if not isinstance(table, dict):
            raise ValueError(f"{origin}: [{name}] must be a table")
        allowed = {f.name for f in fields(cls)}
        for key in table:
            if key not in allowed:
                raise ValueError(f"{origin}: unknown key {key!r} in [{name}] (expected one of {', '.join(sorted(allowed))})")
        try:
            kwargs[name] = cls(**table)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{origin}: {exc}") from None
    if "read_noise_sampling" in data:
        kwargs["read_noise_sampling"] = data["read_noise_sampling"]
    try:
        return ChipConfig(**kwargs)
    except ValueError as exc:
        raise ValueError(f"{origin}: {exc}") from None
