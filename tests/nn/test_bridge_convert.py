"""convert_to_analog: what is swapped, what is kept, what is left digital with a warning."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn.utils import parametrizations

from crossbar import ActivationConfig, Chip, ChipConfig
from crossbar.nn import AnalogActivation, AnalogConv2d, AnalogConversionWarning, AnalogLinear, ReadConditions, convert_to_analog
from tests.nn.test_bridge_layers import cnn, ideal_chip, mlp


class OwnMatrix(nn.Module):
    """A custom layer with its own weight matrix (the bridge cannot know what it computes) and a Linear inside."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.ones(4, 4))
        self.inner = nn.Linear(4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(x @ self.scale)


def test_unsupported_layers_are_left_digital_with_one_warning_listing_them() -> None:
    model = nn.ModuleDict(
        {
            "fc": nn.Linear(4, 4),
            "conv1d": nn.Conv1d(2, 2, 3),
            "grouped": nn.Conv2d(4, 4, 3, groups=2),
            "lstm": nn.LSTM(4, 4),
            "attention": nn.MultiheadAttention(4, 2),
            "custom": OwnMatrix(),
            "normed": parametrizations.weight_norm(nn.Linear(4, 4)),
            "embedding": nn.Embedding(10, 4),
            "norm": nn.LayerNorm(4),
        }
    )
    with pytest.warns(AnalogConversionWarning) as record:
        analog = convert_to_analog(model, ideal_chip())
    assert len(record) == 1
    message = str(record[0].message)
    assert message.startswith("convert_to_analog left 6 item(s) digital: ")
    for item in [
        "conv1d (Conv1d: not supported)",
        "grouped (Conv2d: groups=2)",
        "lstm (LSTM: not supported)",
        "attention (MultiheadAttention: not supported)",
        "custom (OwnMatrix: own weight matrix)",
        "normed (ParametrizedLinear: parametrized weights)",
    ]:
        assert item in message
    assert "embedding" not in message and "norm (" not in message  # lookups and norms are digital by nature
    assert isinstance(analog["fc"], AnalogLinear)
    assert isinstance(analog["custom"].inner, AnalogLinear)  # the custom layer's own children are converted
    for name in ("conv1d", "grouped", "lstm", "attention", "normed", "embedding", "norm"):
        assert type(analog[name]) is type(model[name])
        for (key, a), (_, b) in zip(analog[name].state_dict().items(), model[name].state_dict().items()):
            assert torch.equal(a, b), (name, key)


def test_conversion_copies_by_default_shares_parameters_and_keeps_the_rest() -> None:
    model = cnn()
    chip = ideal_chip()
    analog = convert_to_analog(model, chip, read_conditions=ReadConditions(time_sec=10.0))
    assert analog is not model and isinstance(model[0], nn.Conv2d) and not isinstance(model[0], AnalogConv2d)
    assert [type(m).__name__ for m in analog] == ["AnalogConv2d", "ReLU", "AnalogConv2d", "Tanh", "Flatten", "AnalogLinear"]
    assert all(m.chip is chip and m.read_conditions.time_sec == 10.0 for m in analog if hasattr(m, "chip"))
    assert list(analog.state_dict()) == list(model.state_dict())  # checkpoints load both ways
    analog.load_state_dict(model.state_dict())
    with torch.no_grad():
        analog[0].weight.add_(1.0)  # a copy: the original model is not touched
    assert not torch.equal(analog[0].weight, model[0].weight)
    layer = AnalogLinear.from_linear(model[5], chip=chip)
    assert layer.weight is model[5].weight and layer.bias is model[5].bias  # from_linear shares the parameters

    inplace = convert_to_analog(model, chip, inplace=True)
    assert inplace is model and isinstance(model[5], AnalogLinear) and isinstance(model[5], nn.Linear)
    assert convert_to_analog(inplace, chip, inplace=True) is inplace  # converting twice changes nothing
    assert isinstance(convert_to_analog(nn.Linear(3, 2), chip), AnalogLinear)  # a bare layer is converted too


def test_activation_noise_moves_to_analog_activations() -> None:
    chip = Chip("pcm", ChipConfig(activation=ActivationConfig(uncorrelated_std_rel=0.1)))
    analog = convert_to_analog(mlp(), chip)
    kinds = [type(m).__name__ for m in analog]
    assert kinds == ["AnalogLinear", "AnalogActivation", "AnalogLinear", "AnalogActivation", "AnalogLinear"]
    seeds = {m.rng.bit_generator.state["state"]["state"] for m in analog if isinstance(m, AnalogActivation)}
    assert len(seeds) == 2  # each activation draws its own noise
    with pytest.warns(AnalogConversionWarning, match="no nn.ReLU/nn.Sigmoid/nn.Tanh module to carry the chip's activation noise"):
        convert_to_analog(nn.Sequential(nn.Linear(4, 4)), chip)


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: convert_to_analog("model"), "model must be a torch.nn.Module"),
        (lambda: convert_to_analog(mlp(), "pcm"), "chip must be a crossbar.Chip"),
        (lambda: convert_to_analog(mlp(), ideal_chip(), read_conditions=1.0), "read_conditions must be a ReadConditions"),
    ],
    ids=["model", "chip", "conditions"],
)
def test_bad_arguments_give_clear_errors(call, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        call()
