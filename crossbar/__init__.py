"""crossbar: a circuit-level simulator of analog in-memory-computing crossbar chips.

The public API: load a :class:`DeviceProfile`, configure a :class:`Chip`, program weights, run MVMs.

>>> from crossbar import Chip, ChipConfig, Stages
>>> chip = Chip("pcm", ChipConfig(stages=Stages.all_off()), seed=1)
"""

from crossbar._version import __version__
from crossbar.chip import Chip, ProgrammedMatrix, ReadState
from crossbar.config import (
    ADCConfig,
    Activation,
    ActivationConfig,
    ChipConfig,
    CircuitConfig,
    DACConfig,
    DifferentialReadout,
    InputRange,
    NoiseKind,
    ReadNoiseSampling,
    ScaleMode,
    Stages,
    TileConfig,
)
from crossbar.profiles import DeviceProfile, ProfileError, list_profiles, load_profile
from crossbar.tiling import TileGrid

__all__ = [
    "ADCConfig",
    "Activation",
    "ActivationConfig",
    "Chip",
    "ChipConfig",
    "CircuitConfig",
    "DACConfig",
    "DeviceProfile",
    "DifferentialReadout",
    "InputRange",
    "NoiseKind",
    "ProfileError",
    "ProgrammedMatrix",
    "ReadNoiseSampling",
    "ReadState",
    "ScaleMode",
    "Stages",
    "TileConfig",
    "TileGrid",
    "__version__",
    "list_profiles",
    "load_profile",
]
