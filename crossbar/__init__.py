"""crossbar: a circuit-level simulator of analog in-memory-computing crossbar chips.

The public API: load a :class:`DeviceProfile`, configure a :class:`Chip`, program weights, run MVMs.

>>> from crossbar import Chip, ChipConfig, Stages
>>> chip = Chip("pcm", ChipConfig(stages=Stages.all_off()), seed=1)
"""

from crossbar import _threadenv  # noqa: F401  (first: thread-pool settings before NumPy loads)
from crossbar._version import __version__
from crossbar.characterization import (
    Characterization,
    CharacterizationProtocol,
    InputDistribution,
    InputSet,
    MatrixKind,
    characterize,
    probe_matrix,
)
from crossbar.characterization_io import read_characterization, write_characterization
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
from crossbar.fitting import PiHW, SurrogateParams
from crossbar.profiles import DeviceProfile, ProfileError, list_profiles, load_profile
from crossbar.tiling import TileGrid

__all__ = [
    "ADCConfig",
    "Activation",
    "ActivationConfig",
    "Characterization",
    "CharacterizationProtocol",
    "Chip",
    "ChipConfig",
    "CircuitConfig",
    "DACConfig",
    "DeviceProfile",
    "DifferentialReadout",
    "InputDistribution",
    "InputRange",
    "InputSet",
    "MatrixKind",
    "NoiseKind",
    "PiHW",
    "ProfileError",
    "ProgrammedMatrix",
    "ReadNoiseSampling",
    "ReadState",
    "ScaleMode",
    "Stages",
    "SurrogateParams",
    "TileConfig",
    "TileGrid",
    "__version__",
    "characterize",
    "list_profiles",
    "load_profile",
    "probe_matrix",
    "read_characterization",
    "write_characterization",
]
