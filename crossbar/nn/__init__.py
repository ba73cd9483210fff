"""The torch bridge: chip-in-the-loop layers and the differentiable surrogate of the chip."""

from crossbar.fitting import SurrogateParams
from crossbar.nn.control import analog_layers, program_analog, programming_count, reseed_analog, set_read_conditions
from crossbar.nn.convert import AnalogConversionWarning, convert_to_analog
from crossbar.nn.layers import AnalogActivation, AnalogConv2d, AnalogLayer, AnalogLinear, ReadConditions
from crossbar.nn.state_io import load_analog_state, save_analog_state
from crossbar.nn.surrogate import (
    StaticNoise,
    SurrogateLinear,
    SurrogateNoise,
    convert_to_surrogate,
    strip_surrogate,
    surrogate_activation_noise,
    surrogate_layers,
    surrogate_linear,
    surrogate_outputs,
    update_surrogate_params,
)

__all__ = [
    # chip-in-the-loop bridge (issue 4)
    "AnalogActivation",
    "AnalogConv2d",
    "AnalogConversionWarning",
    "AnalogLayer",
    "AnalogLinear",
    "ReadConditions",
    "analog_layers",
    "convert_to_analog",
    "load_analog_state",
    "program_analog",
    "programming_count",
    "reseed_analog",
    "save_analog_state",
    "set_read_conditions",
    # differentiable surrogate (issue 5)
    "StaticNoise",
    "SurrogateLinear",
    "SurrogateNoise",
    "SurrogateParams",
    "convert_to_surrogate",
    "strip_surrogate",
    "surrogate_activation_noise",
    "surrogate_layers",
    "surrogate_linear",
    "surrogate_outputs",
    "update_surrogate_params",
]
