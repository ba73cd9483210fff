"""Speed of the torch bridge: a converted 784-300-300-10 MLP on the chip against the digital torch model.

Records (batch 1024, float32, CPU, 256 x 256 tiles, profile ``pcm``, default stages: programming and read
noise, DAC and ADC at 8 bits, output noise, drift and temperature on; no IR drop):

``bridge_mlp784_b1024_forward``
    Inference forward (``torch.no_grad``, eval mode) of the programmed analog model vs the digital model.
    Target (issue 4): ratio <= 2.5.
``bridge_mlp784_b1024_fwd_bwd``
    Forward + backward of the cross-entropy loss (training mode, weights unchanged, so no
    re-programming) vs the same for the digital model. No target.
``bridge_mlp784_program``
    Programming all three layers (mapping, programming noise, read-state build at the first read) vs one
    digital forward: the extra cost a chip-in-the-loop training step pays after every optimizer step.
    No target.
``bridge_mlp784_b1024_forward_chip_mvm_share``
    Where the forward time goes: the fraction spent in ``ProgrammedMatrix.matvec`` (the chip MVM
    itself); the rest is the bridge (checks, tensor/array hand-over, digital bias and ReLU).
"""

from __future__ import annotations

import time

import numpy as np
import torch
from torch import nn

from benchmarks._harness import Record, speed_record, time_call
from crossbar import Chip, ChipConfig
from crossbar.nn import analog_layers, convert_to_analog, program_analog

TARGET_FORWARD_RATIO = 2.5
BATCH = 1024
SIZES = (784, 300, 300, 10)
PROFILE = "pcm"


def _models() -> tuple[nn.Module, nn.Module]:
    torch.manual_seed(0)
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(SIZES[:-1], SIZES[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(SIZES) - 2:
            layers.append(nn.ReLU())
    digital = nn.Sequential(*layers)
    analog = convert_to_analog(digital, Chip(PROFILE, ChipConfig(), seed=0))
    return digital, analog


def _mvm_share(analog: nn.Module, x: torch.Tensor, repeats: int) -> float:
    """Fraction of the analog forward spent inside ``ProgrammedMatrix.matvec``."""
    matrices = [layer.programmed_matrix for _, layer in analog_layers(analog)]
    spent = [0.0]
    originals = []
    for m in matrices:
        original = m.matvec

        def timed(*args: object, _f=original, **kwargs: object) -> np.ndarray:
            t0 = time.perf_counter()
            try:
                return _f(*args, **kwargs)
            finally:
                spent[0] += time.perf_counter() - t0

        originals.append(original)
        m.matvec = timed  # type: ignore[method-assign]
    try:
        with torch.no_grad():
            analog(x)
            spent[0] = 0.0
            t0 = time.perf_counter()
            for _ in range(repeats):
                analog(x)
            total = time.perf_counter() - t0
    finally:
        for m in matrices:
            del m.matvec  # restore the class method
    return spent[0] / total


def run(quick: bool) -> list[Record]:
    digital, analog = _models()
    x = torch.randn(BATCH, SIZES[0])
    target = torch.randint(0, SIZES[-1], (BATCH,))
    repeats = 3 if quick else 7
    params = {
        "sizes": list(SIZES),
        "batch": BATCH,
        "dtype": "float32",
        "profile": PROFILE,
        "tile": [256, 256],
        "stages": "defaults (all on except drift compensation; no IR drop)",
        "torch_threads": torch.get_num_threads(),
    }
    program_analog(analog)
    with torch.no_grad():
        analog(x)  # build the read states

    def fwd_digital() -> None:
        with torch.no_grad():
            digital(x)

    def fwd_analog() -> None:
        with torch.no_grad():
            analog(x)

    def step(model: nn.Module) -> None:
        model.zero_grad(set_to_none=True)
        nn.functional.cross_entropy(model(x), target).backward()

    digital.eval()
    analog.eval()
    records = [
        speed_record(
            f"bridge_mlp784_b{BATCH}_forward",
            fwd_analog,
            "digital torch forward of the same MLP",
            fwd_digital,
            target=TARGET_FORWARD_RATIO,
            repeats=repeats,
            params=params,
        )
    ]
    digital.train()
    analog.train()
    records.append(
        speed_record(
            f"bridge_mlp784_b{BATCH}_fwd_bwd",
            lambda: step(analog),
            "digital torch forward + backward",
            lambda: step(digital),
            target=None,
            repeats=repeats,
            params=params,
        )
    )
    n_before = sum(layer.n_programmings for _, layer in analog_layers(analog))

    def program_and_read() -> None:
        program_analog(analog)
        with torch.no_grad():
            analog(x[:1])  # the first read of a new programmed state builds its read state

    t_program = time_call(program_and_read, repeats=repeats)
    t_digital = time_call(fwd_digital, repeats=repeats)
    records.append(
        Record(
            name="bridge_mlp784_program",
            value=t_program,
            unit="s",
            baseline="digital torch forward, batch 1024",
            baseline_value=t_digital,
            ratio=t_program / t_digital,
            params={**params, "programmings_timed": sum(layer.n_programmings for _, layer in analog_layers(analog)) - n_before},
        )
    )
    analog.eval()
    records.append(
        Record(
            name=f"bridge_mlp784_b{BATCH}_forward_chip_mvm_share",
            value=_mvm_share(analog, x, repeats=5 if quick else 20),
            unit="fraction",
            params=params,
        )
    )
    return records
