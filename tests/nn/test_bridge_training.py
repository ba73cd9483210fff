"""Chip-in-the-loop training with stock torch optimizers, and the programming it costs."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from crossbar import Chip, ChipConfig
from crossbar.nn import ReadConditions, convert_to_analog, program_analog, programming_count, reseed_analog, save_analog_state, set_read_conditions
from tests.nn.test_bridge_layers import SMALL_TILES, mlp


class CountingChip(Chip):
    """Counts calls of ``Chip.program`` independently of the layers' own ``n_programmings``."""

    calls = 0

    def program(self, weights, bias=None):  # type: ignore[override]
        self.calls += 1
        return super().program(weights, bias)


def separable_task(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Two classes in 10-D on either side of a random hyperplane, with a margin of 1 (std-1 features)."""
    g = torch.Generator().manual_seed(seed)
    normal = torch.randn(10, generator=torch.Generator().manual_seed(1234))
    normal = normal / normal.norm()
    x = torch.randn(n, 10, generator=g)
    labels = (x @ normal > 0).long()
    x = x + (2 * labels - 1).unsqueeze(1) * 0.5 * normal  # push each class 0.5 away from the plane
    return x, labels


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_tiny_mlp_trained_chip_in_the_loop_converges(optimizer: str) -> None:
    """Noisy PCM chip (programming, read and output noise, 8-bit converters); the forward runs on the chip."""
    torch.manual_seed(0)
    chip = CountingChip("pcm", ChipConfig(tile=SMALL_TILES), seed=0)
    model = convert_to_analog(mlp(sizes=(10, 16, 2)), chip)
    x, labels = separable_task(512, seed=1)
    x_test, labels_test = separable_task(512, seed=2)

    def accuracy() -> float:
        model.eval()
        with torch.no_grad():
            acc = float((model(x_test).argmax(1) == labels_test).float().mean())
        model.train()
        return acc

    start = accuracy()
    opt = torch.optim.SGD(model.parameters(), lr=0.3, momentum=0.9) if optimizer == "sgd" else torch.optim.Adam(model.parameters(), lr=0.03)
    n_steps = 40
    losses = []
    for step in range(n_steps):
        batch = slice((step * 64) % 512, (step * 64) % 512 + 64)
        loss = nn.functional.cross_entropy(model(x[batch]), labels[batch])
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    final = accuracy()
    with torch.no_grad():  # the chip really was noisy: its logits are not the digital ones
        digital_logits = x_test
        for m in model:
            digital_logits = nn.functional.linear(digital_logits, m.weight, m.bias) if isinstance(m, nn.Linear) else m(digital_logits)
        chip_logits = model(x_test)
    assert float((chip_logits - digital_logits).norm() / digital_logits.norm()) > 1e-3
    assert start < 0.8
    assert final > 0.95, (start, final)
    assert sum(losses[-10:]) < 0.5 * sum(losses[:10])
    # one programming per layer and weight change: each step's forward after the previous step's update
    assert chip.calls == programming_count(model) == 2 * (n_steps + 1)


def test_eval_mode_inference_on_a_programmed_model_never_reprograms(tmp_path) -> None:
    torch.manual_seed(1)
    chip = CountingChip("pcm", ChipConfig(tile=SMALL_TILES), seed=0)
    model = convert_to_analog(mlp(), chip)
    assert program_analog(model) == 3 and chip.calls == 3
    model.eval()
    x = torch.randn(8, 20)
    with torch.no_grad():
        model(x)
    with torch.inference_mode():
        model(x)
        model(x[:1])
    xg = x.clone().requires_grad_(True)
    model(xg).sum().backward()  # gradients in eval mode: weights get .grad, but are not changed
    set_read_conditions(model, ReadConditions(time_sec=1e6, temperature_kelvin=330.0, drift_compensation=True))
    reseed_analog(model, 4)
    save_analog_state(model, tmp_path / "m.h5")
    model.load_state_dict(model.state_dict())
    model.to(torch.float32)  # a no-op conversion replaces nothing
    with torch.no_grad():
        model(x)
    assert chip.calls == 3 and programming_count(model) == 3
