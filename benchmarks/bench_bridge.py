"""Speed of the torch bridge: converted models on the chip against the same digital torch models.

Chip settings of every record: profile ``pcm``, 256 x 256 tiles, 8-bit DAC and ADC, every stage of
``Stages`` on except IR drop (programming noise, mismatch, stuck-at faults, drift, temperature, read
noise, converters, output noise, activation noise (zero std by default), drift compensation), read one
hour after programming; float32 on the CPU. The digital baseline is the same torch model, timed in the
same run (interleaved), with torch on as many threads as the chip's numba kernels.

Records for the 784-300-300-10 MLP, batch 1024 (issue 4):

``bridge_mlp784_b1024_forward``
    Inference forward (``torch.no_grad``, eval mode) of the programmed analog model vs the digital model.
    Target (issue 4): ratio <= 2.5.
``bridge_mlp784_b1024_forward_per_batch``
    The same inference forward on a chip with ``ReadNoiseSampling.PER_BATCH`` (one fresh weight-noise
    draw per call, shared by the batch: one GEMM per tile row instead of two). No target.
``bridge_mlp784_b1024_fwd_bwd``
    Forward + backward of the cross-entropy loss (training mode, weights unchanged, so no
    re-programming) vs the same for the digital model. No target.
``bridge_mlp784_program``
    Programming all three layers (mapping, programming noise, read-state build at the first read) vs one
    digital forward: the extra cost a chip-in-the-loop training step pays after every optimizer step.
    No target.
``bridge_mlp784_b1024_forward_chip_mvm_share``
    Where the forward time goes: the fraction spent in ``ProgrammedMatrix.matvec`` (the chip MVM
    itself); the rest is the bridge (checks, tensor/array hand-over, digital bias) and the digital ReLUs.
``bridge_mlp784_b1024_chip_mvm``
    The three chip MVMs alone, called with NumPy arrays (the inputs the layers see), vs the digital
    forward: the floor the bridge cannot go below, set by the chip kernels.
``bridge_mlp784_b1024_forward_bridge_overhead``
    The analog forward minus the time inside the chip MVMs (measured in the same calls) vs the digital
    forward: everything the bridge adds around the chip, plus the ReLUs the digital model also runs.

Records for a small CNN (conv 16->32, 3x3, padding 1, on 16 x 16 images, then ReLU, batch 64):

``bridge_conv16x16_b64_forward``
    Inference forward of the programmed ``AnalogConv2d`` (unfold onto one MVM of 16384 vectors of 144
    numbers) vs ``nn.Conv2d``. No target.
``bridge_conv16x16_b64_forward_bridge_overhead``
    That forward minus the time inside the chip MVM, vs ``nn.Conv2d``: the unfold, the output layout and
    the hand-over.
"""

from __future__ import annotations

import dataclasses
import time
from contextlib import contextmanager
from dataclasses import fields
from typing import Any, Callable, Iterator

import numba
import numpy as np
import torch
from torch import nn

from benchmarks._harness import Record, speed_record, time_call
from crossbar import Chip, ChipConfig, ReadNoiseSampling, Stages
from crossbar.config import config_to_dict
from crossbar.nn import ReadConditions, analog_layers, convert_to_analog, program_analog

TARGET_FORWARD_RATIO = 2.5
BATCH = 1024
SIZES = (784, 300, 300, 10)
PROFILE = "pcm"
READ_TIME_SEC = 3600.0
CONV_SHAPE = (64, 16, 16, 16)  # N, C, H, W
CONV_OUT = 32


def chip_config() -> ChipConfig:
    """Every stage on except IR drop (new stages are picked up by name)."""
    return ChipConfig(stages=Stages(**{f.name: f.name != "ir_drop" for f in fields(Stages)}))


def _mlp() -> nn.Sequential:
    torch.manual_seed(0)
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(SIZES[:-1], SIZES[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(SIZES) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


def _convert(digital: nn.Module) -> nn.Module:
    analog = convert_to_analog(digital, Chip(PROFILE, chip_config(), seed=0), read_conditions=ReadConditions(time_sec=READ_TIME_SEC))
    program_analog(analog)
    return analog


@contextmanager
def _timed_matvecs(analog: nn.Module) -> Iterator[list[float]]:
    """Accumulate the wall time spent inside each layer's ``ProgrammedMatrix.matvec`` into ``spent[0]``."""
    spent = [0.0]
    matrices = [layer.programmed_matrix for _, layer in analog_layers(analog)]
    for m in matrices:
        original = m.matvec

        def timed(*args: Any, _f: Callable[..., np.ndarray] = original, **kwargs: Any) -> np.ndarray:
            t0 = time.perf_counter()
            try:
                return _f(*args, **kwargs)
            finally:
                spent[0] += time.perf_counter() - t0

        m.matvec = timed  # type: ignore[method-assign]
    try:
        yield spent
    finally:
        for m in matrices:
            del m.matvec  # back to the class method


def _mvm_share(analog: nn.Module, x: torch.Tensor, repeats: int) -> tuple[float, float]:
    """(median forward time, median fraction of it spent inside the chip MVMs), forwards under no_grad."""
    totals, shares = [], []
    with _timed_matvecs(analog) as spent, torch.no_grad():
        analog(x)
        for _ in range(repeats):
            spent[0] = 0.0
            t0 = time.perf_counter()
            analog(x)
            total = time.perf_counter() - t0
            totals.append(total)
            shares.append(spent[0] / total)
    return float(np.median(totals)), float(np.median(shares))


def _overhead_record(name: str, analog: nn.Module, x: torch.Tensor, baseline: str, digital_fn: Callable[[], None],
                     repeats: int, params: dict[str, Any]) -> tuple[Record, float]:
    """The analog forward minus its chip MVMs, against the digital forward timed alternately."""
    overheads, bases, shares = [], [], []
    for _ in range(3):
        bases.append(time_call(digital_fn, repeats=repeats))
        total, share = _mvm_share(analog, x, repeats=max(5, 2 * repeats))
        overheads.append(total * (1.0 - share))
        shares.append(share)
    value, base = sorted(overheads)[1], sorted(bases)[1]
    record = Record(name=name, value=value, unit="s", baseline=baseline, baseline_value=base, ratio=value / base, params=params)
    return record, sorted(shares)[1]


def _threads() -> dict[str, Any]:
    return {"torch_threads": torch.get_num_threads(), "numba_threads": numba.get_num_threads()}


def _mlp_records(quick: bool, params: dict[str, Any]) -> list[Record]:
    digital = _mlp()
    analog = _convert(digital)
    x = torch.randn(BATCH, SIZES[0], generator=torch.Generator().manual_seed(1))
    target = torch.randint(0, SIZES[-1], (BATCH,), generator=torch.Generator().manual_seed(2))
    repeats = 3 if quick else 7
    params = {**params, "sizes": list(SIZES), "batch": BATCH}
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
    baseline = "digital torch forward of the same MLP"
    records = [
        speed_record(f"bridge_mlp784_b{BATCH}_forward", fwd_analog, baseline, fwd_digital,
                     target=TARGET_FORWARD_RATIO, repeats=repeats, params=params)
    ]

    # The chip alone, on the arrays the layers receive.
    matrices = [layer.programmed_matrix for _, layer in analog_layers(analog)]
    inputs = [x.numpy()]
    with torch.no_grad():
        h = x
        for module in digital:
            h = module(h)
            if isinstance(module, nn.ReLU):
                inputs.append(np.ascontiguousarray(h.numpy()))

    def chip_only() -> None:
        for m, xi in zip(matrices, inputs):
            m.matvec(xi, time_sec=READ_TIME_SEC)

    records.append(speed_record(f"bridge_mlp784_b{BATCH}_chip_mvm", chip_only, baseline, fwd_digital,
                                target=None, repeats=repeats, params=params))
    overhead, share = _overhead_record(f"bridge_mlp784_b{BATCH}_forward_bridge_overhead", analog, x, baseline, fwd_digital,
                                       repeats, params)
    records.append(overhead)

    digital.train()
    analog.train()
    records.append(
        speed_record(f"bridge_mlp784_b{BATCH}_fwd_bwd", lambda: step(analog), "digital torch forward + backward",
                     lambda: step(digital), target=None, repeats=repeats, params=params)
    )
    n_before = sum(layer.n_programmings for _, layer in analog_layers(analog))

    def program_and_read() -> None:
        program_analog(analog)
        with torch.no_grad():
            analog(x[:1])  # the first read of a new programmed state builds its read state

    t_program = time_call(program_and_read, repeats=repeats)
    t_digital = time_call(fwd_digital, repeats=repeats)
    n_timed = sum(layer.n_programmings for _, layer in analog_layers(analog)) - n_before
    records.append(
        Record(name="bridge_mlp784_program", value=t_program, unit="s", baseline=f"digital torch forward, batch {BATCH}",
               baseline_value=t_digital, ratio=t_program / t_digital, params={**params, "programmings_timed": n_timed})
    )
    records.append(Record(name=f"bridge_mlp784_b{BATCH}_forward_chip_mvm_share", value=share, unit="fraction", params=params))

    # The same forward with per-batch read noise (one weight-noise draw per call: one GEMM per tile row).
    config = dataclasses.replace(chip_config(), read_noise_sampling=ReadNoiseSampling.PER_BATCH)
    per_batch = convert_to_analog(digital, Chip(PROFILE, config, seed=0), read_conditions=ReadConditions(time_sec=READ_TIME_SEC))
    program_analog(per_batch)
    per_batch.eval()
    digital.eval()

    def fwd_per_batch() -> None:
        with torch.no_grad():
            per_batch(x)

    records.append(speed_record(f"bridge_mlp784_b{BATCH}_forward_per_batch", fwd_per_batch, baseline, fwd_digital,
                                target=None, repeats=repeats,
                                params={**params, "read_noise_sampling": ReadNoiseSampling.PER_BATCH.value,
                                        "chip_config": config_to_dict(config)}))
    return records


def _conv_records(quick: bool, params: dict[str, Any]) -> list[Record]:
    n, c, h, w = CONV_SHAPE
    torch.manual_seed(3)
    digital = nn.Sequential(nn.Conv2d(c, CONV_OUT, 3, padding=1), nn.ReLU()).eval()
    analog = _convert(digital).eval()
    x = torch.randn(*CONV_SHAPE, generator=torch.Generator().manual_seed(4))
    repeats = 3 if quick else 7
    params = {**params, "input": list(CONV_SHAPE), "out_channels": CONV_OUT, "kernel": [3, 3], "padding": 1}
    with torch.no_grad():
        analog(x)

    def fwd_digital() -> None:
        with torch.no_grad():
            digital(x)

    def fwd_analog() -> None:
        with torch.no_grad():
            analog(x)

    baseline = "digital nn.Conv2d + ReLU forward"
    forward = speed_record(f"bridge_conv16x16_b{n}_forward", fwd_analog, baseline, fwd_digital, target=None,
                           repeats=repeats, params=params)
    overhead, _ = _overhead_record(f"bridge_conv16x16_b{n}_forward_bridge_overhead", analog, x, baseline, fwd_digital,
                                   repeats, params)
    return [forward, overhead]


def run(quick: bool) -> list[Record]:
    threads_before = torch.get_num_threads()
    torch.set_num_threads(numba.get_num_threads())  # the baseline gets the threads the chip kernels get
    try:
        params = {
            "dtype": "float32",
            "profile": PROFILE,
            "tile": [256, 256],
            "read_time_sec": READ_TIME_SEC,
            "chip_config": config_to_dict(chip_config()),
            **_threads(),
        }
        return _mlp_records(quick, params) + _conv_records(quick, params)
    finally:
        torch.set_num_threads(threads_before)
