"""The chip: program a weight matrix onto crossbar tiles and run matrix-vector multiplies on it.

>>> import numpy as np
>>> from crossbar import Chip
>>> chip = Chip("pcm", seed=0)
>>> m = chip.program(np.random.default_rng(0).standard_normal((64, 128)))
>>> y = m.matvec(np.ones((4, 128)), time_sec=3600.0, temperature_kelvin=330.0)
>>> y.shape
(4, 64)

One MVM runs the stages of ``DESIGN.md`` in order: mapping and programming happen once in
:meth:`Chip.program`; drift and temperature, the optional drift compensation and the read-noise
variances depend only on (time, temperature) and are computed once per state and cached
(:class:`ReadState`); every :meth:`ProgrammedMatrix.matvec` then costs the DAC pass, one GEMM per tile row
for the signal, one more for the exact read-noise variance, and one fused epilogue kernel.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from crossbar import _kernels, irdrop
from crossbar.config import ChipConfig, DifferentialReadout, InputRange, ReadNoiseSampling
from crossbar.drift import drift_factor, temperature_factor, validate_read_conditions
from crossbar.mapping import ConductanceTargets, map_weights
from crossbar.profiles import DeviceProfile, load_profile
from crossbar.programming import DeviceState, program_devices
from crossbar.read_noise import flicker_variance, fresh_read_variance, has_flicker_noise, has_fresh_read_noise
from crossbar.tiling import TileGrid

__all__ = ["Chip", "ProgrammedMatrix", "ReadState"]

_NOISE_CHUNK = 8
"""Samples per random stream in the epilogue; fixed so results do not depend on the thread count."""
_MATRIX_CHUNK = 16
"""Rows per random stream when a weight-noise matrix is drawn (per-batch read noise)."""
_PARALLEL_MIN_ELEMENTS = 1 << 20
"""Below this many elements a kernel runs on the calling thread: waking the worker threads costs more.
Measured on 2 cores, batch 1024, float32, ratio to the GEMM, threaded vs serial DAC/epilogue/noise
kernels (median of 7 alternating rounds): 256 inputs 4.42 vs 3.70 (all stages), 2.45 vs 1.56 (IR drop
only); 512 inputs 3.48 vs 3.42, 1.65 vs 1.48; 1024 inputs (2^20 elements) 3.01 vs 3.11, 1.90 vs 2.05
(per-batch read noise), so the threads start at 2^20."""
_READ_STATE_CACHE = 8
"""How many (time, temperature, dtype) read states a programmed matrix keeps."""


def _check_seed(seed: Any, name: str = "seed") -> int:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or int(seed) < 0:
        raise ValueError(f"{name} = {seed!r} must be a non-negative integer")
    return int(seed)


def _as_real_array(a: Any, name: str) -> np.ndarray:
    arr = np.asarray(a)
    if arr.dtype.kind not in "fiu" or arr.dtype.kind == "b":
        raise ValueError(f"{name} has dtype {arr.dtype}; expected a real floating-point (or integer) array")
    if arr.size == 0:
        raise ValueError(f"{name} has shape {arr.shape}: zero-size arrays cannot be programmed or multiplied")
    if not np.isfinite(arr).all():
        bad = np.argwhere(~np.isfinite(arr))[0]
        raise ValueError(f"{name} contains a non-finite value ({arr[tuple(bad)]}) at index {tuple(int(i) for i in bad)}")
    return arr


@dataclass(frozen=True, kw_only=True, eq=False)
class ReadState:
    """What the periphery sees at one (time, temperature), in one float dtype; reused for every MVM.

    A readout channel is one set of columns digitized together: one channel (G+ - G-) for analog
    differential readout, two (G+ and G-) for digital. Partial ``p`` is channel ``p // n_row_tiles``
    over tile row ``p % n_row_tiles``.
    """

    time_sec: float
    """Time since programming, s."""
    temperature_kelvin: float
    """Chip temperature, K."""
    conductance_siemens: np.ndarray
    """Device conductances at this state, shape (2, in, out), S (read-only)."""
    signal_siemens: tuple[np.ndarray, ...]
    """Per channel, the (in, out) conductance matrix whose product with the voltages is the current."""
    variance_siemens2: tuple[np.ndarray, ...] | None
    """Per channel, the (in, out) read-noise variance per device, S^2; ``None`` without read noise."""
    gain: np.ndarray
    """Digital factor per (partial, output) turning a current into weight units (sign and drift
    compensation included), shape (n_part, out)."""
    full_scale_amp: np.ndarray
    """ADC clipping current per partial, A (``inf`` when the ADC stage is off), shape (n_part,)."""
    drift_compensation: np.ndarray
    """Global drift-compensation factor per tile, shape (n_row_tiles, n_col_tiles) (ones when off)."""


class Chip:
    """A simulated analog in-memory-computing chip of one device technology.

    Parameters
    ----------
    profile : DeviceProfile, str or path
        Device technology: a profile object, a shipped profile name (``"pcm"``, ``"ideal"``, ...) or a
        path to a TOML file.
    config : ChipConfig, optional
        Tiles, converters, activation and stage switches; defaults to ``ChipConfig()``.
    seed : int
        Seed of every random draw. The same seed, profile, config and sequence of calls give the same
        chip and the same outputs, bit for bit.

    Notes
    -----
    Each :meth:`program` call spawns a new child of the chip's ``numpy.random.SeedSequence``: the k-th
    programmed matrix of a chip is the same for a given seed whatever happens in between.
    """

    def __init__(self, profile: DeviceProfile | str | Path = "ideal", config: ChipConfig | None = None, *, seed: int = 0) -> None:
        self.profile = profile if isinstance(profile, DeviceProfile) else load_profile(profile)
        if config is None:
            config = ChipConfig()
        if not isinstance(config, ChipConfig):
            raise ValueError(f"config must be a ChipConfig, got {type(config).__name__}")
        self.config = config
        self.seed = _check_seed(seed)
        self._seed_sequence = np.random.SeedSequence(self.seed)

    def __repr__(self) -> str:
        return f"Chip(profile={self.profile.name!r}, tile={self.config.tile.rows}x{self.config.tile.cols}, seed={self.seed})"

    def program(self, weights: Any, bias: Any = None) -> ProgrammedMatrix:
        """Program a weight matrix (out x in) onto tiles; returns the programmed matrix.

        Parameters
        ----------
        weights : array_like, shape (out, in)
            Finite real weights. Any shape; it is tiled over ``config.tile``.
        bias : array_like, shape (out,), optional
            Added digitally after the MVM.
        """
        w = _as_real_array(weights, "weights")
        if w.ndim != 2:
            raise ValueError(f"weights has shape {w.shape}; expected a 2-D matrix (out_features, in_features)")
        w = np.array(w, dtype=np.float64, order="C")
        b = None
        if bias is not None:
            b = _as_real_array(bias, "bias")
            if b.shape != (w.shape[0],):
                raise ValueError(f"bias has shape {b.shape}; expected ({w.shape[0]},) to match weights {w.shape}")
            b = np.array(b, dtype=np.float64)
        (child,) = self._seed_sequence.spawn(1)
        return ProgrammedMatrix(self, w, b, child)

    def restore(self, arrays: dict[str, np.ndarray], *, spawn_key: tuple[int, ...], read_rng_state: dict | None = None) -> ProgrammedMatrix:
        """Rebuild a programmed matrix from :meth:`ProgrammedMatrix.state_arrays` (e.g. read from HDF5).

        The chip must have the profile, config and seed the matrix was programmed with (the caller checks
        provenance); the device draws come from ``arrays``, nothing is re-drawn, so outputs repeat bit for
        bit. ``spawn_key`` is :attr:`ProgrammedMatrix.spawn_key`; ``read_rng_state`` the
        :attr:`ProgrammedMatrix.read_rng` ``bit_generator.state`` to continue the read-noise stream.
        """
        missing = set(ProgrammedMatrix.STATE_KEYS) - set(arrays) - {"bias"}
        if missing:
            raise ValueError(f"cannot restore a programmed matrix: missing array(s) {sorted(missing)}")
        w = _as_real_array(arrays["weights"], "weights")
        if w.ndim != 2:
            raise ValueError(f"weights has shape {w.shape}; expected 2-D")
        b = arrays.get("bias")
        b = None if b is None or np.size(b) == 0 else np.array(b, dtype=np.float64)
        key = tuple(int(k) for k in spawn_key)
        ss = np.random.SeedSequence(self.seed, spawn_key=key)
        if len(key) == 1 and key[0] >= self._seed_sequence.n_children_spawned:
            # Later programmings of this chip draw new devices, not those of the restored matrix again.
            self._seed_sequence = np.random.SeedSequence(self.seed, n_children_spawned=key[0] + 1)
        m = ProgrammedMatrix(self, np.array(w, dtype=np.float64), b, ss, restored=arrays)
        if read_rng_state is not None:
            m.read_rng.bit_generator.state = read_rng_state
        return m


class ProgrammedMatrix:
    """A weight matrix programmed onto the chip: the device state and the MVM on it.

    Created by :meth:`Chip.program`. Conductance arrays are in crossbar orientation (in, out): input j
    drives word line j, output i is read on bit line i.
    """

    STATE_KEYS = ("weights", "bias", "g_target_siemens", "siemens_per_weight", "g_programmed_siemens", "nu", "stuck")
    """Names of the arrays in :meth:`state_arrays`."""

    def __init__(
        self,
        chip: Chip,
        weights: np.ndarray,
        bias: np.ndarray | None,
        seed_sequence: np.random.SeedSequence,
        *,
        restored: dict[str, np.ndarray] | None = None,
    ) -> None:
        cfg = chip.config
        prof = chip.profile
        self.profile: DeviceProfile = prof
        self.config: ChipConfig = cfg
        self.weights = weights
        self.weights.setflags(write=False)
        self.bias = bias
        if bias is not None:
            bias.setflags(write=False)
        self.grid = TileGrid(
            in_features=weights.shape[1], out_features=weights.shape[0], rows=cfg.tile.rows, cols=cfg.tile.cols
        )
        self.seed_sequence = seed_sequence
        program_ss, read_ss = seed_sequence.spawn(2)
        if restored is None:
            self.targets: ConductanceTargets = map_weights(
                weights,
                self.grid,
                g_min_siemens=prof.conductance.g_min_siemens,
                g_max_siemens=prof.conductance.g_max_siemens,
                scale_mode=cfg.tile.scale_mode,
            )
            self.devices: DeviceState = program_devices(
                self.targets.g_target_siemens, prof, cfg.stages, np.random.default_rng(program_ss)
            )
        else:
            self.targets, self.devices = self._restored_state(restored)
        for arr in (self.devices.target_siemens, self.devices.programmed_siemens, self.devices.nu, self.devices.stuck):
            arr.setflags(write=False)
        self._rng = np.random.default_rng(read_ss)
        self._states: OrderedDict[tuple[float, float, str], ReadState] = OrderedDict()
        self._reference_currents: np.ndarray | None = None
        self._effective_cache: OrderedDict[bytes, np.ndarray] = OrderedDict()

    def _restored_state(self, arrays: dict[str, np.ndarray]) -> tuple[ConductanceTargets, DeviceState]:
        n_in, n_out = self.grid.in_features, self.grid.out_features
        shapes = {
            "g_target_siemens": (2, n_in, n_out),
            "g_programmed_siemens": (2, n_in, n_out),
            "nu": (2, n_in, n_out),
            "stuck": (2, n_in, n_out),
            "siemens_per_weight": (self.grid.n_row_tiles, n_out),
        }
        out = {}
        for key, shape in shapes.items():
            arr = np.asarray(arrays[key])
            if arr.shape != shape:
                raise ValueError(f"cannot restore: array {key!r} has shape {arr.shape}, expected {shape} for this chip's tiles")
            out[key] = np.array(arr, dtype=np.int8 if key == "stuck" else np.float64)
            if key != "stuck" and not np.isfinite(out[key]).all():
                raise ValueError(f"cannot restore: array {key!r} contains non-finite values")
        targets = ConductanceTargets(g_target_siemens=out["g_target_siemens"], siemens_per_weight=out["siemens_per_weight"])
        devices = DeviceState(
            target_siemens=out["g_target_siemens"], programmed_siemens=out["g_programmed_siemens"], nu=out["nu"], stuck=out["stuck"]
        )
        return targets, devices

    def state_arrays(self) -> dict[str, np.ndarray]:
        """Every array that defines this programmed instance (see :meth:`Chip.restore`)."""
        return {
            "weights": self.weights,
            "bias": self.bias if self.bias is not None else np.zeros(0),
            "g_target_siemens": self.targets.g_target_siemens,
            "siemens_per_weight": self.targets.siemens_per_weight,
            "g_programmed_siemens": self.devices.programmed_siemens,
            "nu": self.devices.nu,
            "stuck": self.devices.stuck,
        }

    @property
    def spawn_key(self) -> tuple[int, ...]:
        """Position of this matrix in its chip's seed tree (with the chip seed, it fixes every draw)."""
        return tuple(self.seed_sequence.spawn_key)

    # ------------------------------------------------------------------ shapes and conditions
    @property
    def in_features(self) -> int:
        return self.grid.in_features

    @property
    def out_features(self) -> int:
        return self.grid.out_features

    @property
    def reference_time_sec(self) -> float:
        """t0 of the profile: the time at which the programmed state is defined (no drift), s."""
        return self.profile.drift.t0_sec

    @property
    def reference_temperature_kelvin(self) -> float:
        """Temperature at which the chip was programmed, K."""
        return self.profile.temperature.reference_kelvin

    def __repr__(self) -> str:
        return (
            f"ProgrammedMatrix(out={self.out_features}, in={self.in_features}, tiles={self.grid.n_row_tiles}x"
            f"{self.grid.n_col_tiles}, profile={self.profile.name!r})"
        )

    def reseed(self, seed: int) -> None:
        """Restart the read-noise generator from ``seed`` (device draws are unchanged)."""
        self._rng = np.random.default_rng(_check_seed(seed))

    @property
    def read_rng(self) -> np.random.Generator:
        """The generator that seeds fresh per-MVM noise (its state can be saved and restored)."""
        return self._rng

    # ------------------------------------------------------------------ conductances over time
    def _conditions(self, time_sec: float | None, temperature_kelvin: float | None) -> tuple[float, float]:
        t = self.reference_time_sec if time_sec is None else time_sec
        temp = self.reference_temperature_kelvin if temperature_kelvin is None else temperature_kelvin
        return validate_read_conditions(t, temp)

    def _device_conductances(self, time_sec: float, temperature_kelvin: float) -> np.ndarray:
        """Drift, temperature, then the accumulated 1/f deviation drawn once for this state."""
        stages = self.config.stages
        g = self.devices.programmed_siemens
        if stages.drift:
            g = g * drift_factor(self.devices.nu, time_sec, temperature_kelvin, self.profile, temperature=stages.temperature)
        if stages.temperature and temperature_kelvin != self.reference_temperature_kelvin:
            factor = temperature_factor(temperature_kelvin, self.profile)
            working = self.devices.stuck == 0  # stuck devices sit at a fixed end of the window
            g = np.where(working, g * factor, g)
        g = np.array(g, dtype=np.float64)
        if stages.read_noise and has_flicker_noise(self.profile):
            std = np.sqrt(flicker_variance(g, time_sec, self.profile))
            z = self._state_rng(time_sec, temperature_kelvin).standard_normal(g.shape)
            g = np.where(self.devices.stuck == 0, np.maximum(g + std * z, 0.0), g)
        return g

    def _state_rng(self, time_sec: float, temperature_kelvin: float) -> np.random.Generator:
        """Generator of the draws that belong to one (time, temperature) state: same state, same draw."""
        key = tuple(int(np.float64(v).view(np.uint64)) for v in (time_sec, temperature_kelvin))
        ss = np.random.SeedSequence(self.seed_sequence.entropy, spawn_key=self.seed_sequence.spawn_key + (2,) + key)
        return np.random.default_rng(ss)

    def conductances_siemens(self, time_sec: float | None = None, temperature_kelvin: float | None = None) -> np.ndarray:
        """Device conductances at a time since programming and temperature, shape (2, in, out), S.

        Index 0 is the G+ array, 1 the G- array. With no arguments: the programmed state (t0, T_ref).
        Includes the accumulated 1/f deviation of that state (when the read-noise stage is on), not the
        fresh per-read noise.
        """
        t, temp = self._conditions(time_sec, temperature_kelvin)
        return self._device_conductances(t, temp)

    def _array_conductances(self, g: np.ndarray) -> np.ndarray:
        """Conductances as seen from the periphery, shape (2, in, out), S: the device conductances, or
        with the IR-drop stage each tile's effective conductance matrix (:func:`crossbar.irdrop.effective_conductances`,
        cached per distinct device state)."""
        if not self.config.stages.ir_drop:
            return g
        key = hashlib.blake2b(np.ascontiguousarray(g).tobytes(), digest_size=16).digest()
        cached = self._effective_cache.get(key)
        if cached is None:
            cached = np.empty_like(g, dtype=np.float64)
            blocks = [(a, rs, cs) for a in range(g.shape[0]) for _, _, rs, cs in self.grid.tiles()]
            extracted = irdrop.effective_conductances_many([g[a, rs, cs] for a, rs, cs in blocks], self.config.circuit)
            for (a, rs, cs), g_eff in zip(blocks, extracted):
                cached[a, rs, cs] = g_eff
            cached.setflags(write=False)
            self._effective_cache[key] = cached
            if len(self._effective_cache) > _READ_STATE_CACHE:
                self._effective_cache.popitem(last=False)
        else:
            self._effective_cache.move_to_end(key)
        return cached

    def array_conductances_siemens(self, time_sec: float | None = None, temperature_kelvin: float | None = None) -> np.ndarray:
        """Conductances as seen by the periphery at a time and temperature, shape (2, in, out), S.

        With ``Stages.ir_drop`` on: each tile's effective conductance matrix (column currents are
        ``G_eff^T V`` through the resistor mesh); otherwise the device conductances.
        """
        t, temp = self._conditions(time_sec, temperature_kelvin)
        return self._array_conductances(self._device_conductances(t, temp))

    def tile_mesh(
        self,
        x: Any,
        *,
        tile: tuple[int, int] = (0, 0),
        array: int = 0,
        time_sec: float | None = None,
        temperature_kelvin: float | None = None,
    ) -> irdrop.MeshSolution:
        """Solve one tile's resistor mesh for chip inputs ``x``: node voltages, device voltage drops, currents.

        Parameters
        ----------
        x : array_like, shape (in,) or (batch, in)
            Chip inputs, driven through the DAC stage as in :meth:`matvec`; only the tile's rows are used.
        tile : (int, int)
            (tile row k, tile column c) of :attr:`grid`.
        array : int
            0 for the G+ array, 1 for the G- array.
        time_sec, temperature_kelvin : float, optional
            Read conditions (device conductances after drift and temperature, no fresh read noise).

        Returns
        -------
        crossbar.irdrop.MeshSolution
            Word-line, bit-line and device voltages (batch, rows, cols) in V and column currents (batch,
            cols) in A, for the circuit of ``config.circuit`` and the profile's device I-V. Computed
            whether or not ``Stages.ir_drop`` is on.
        """
        k, c = tile
        rs, cs = self.grid.row_slice(k), self.grid.col_slice(c)
        if array not in (0, 1):
            raise ValueError(f"array = {array!r} must be 0 (G+) or 1 (G-)")
        x2, _, _ = self._check_input(x)
        v, _ = self._dac_voltages(np.ascontiguousarray(x2, dtype=np.float64))
        t, temp = self._conditions(time_sec, temperature_kelvin)
        g = self._device_conductances(t, temp)[array, rs, cs]
        return irdrop.solve_mesh(
            g, v[:, rs], self.config.circuit, sinh_alpha_per_volt=self.profile.iv.sinh_alpha_per_volt, node_voltages=True, tile=(k, c)
        )

    def _dac_voltages(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Word-line voltages (batch, in) and digital input scales (batch,) of the DAC stage."""
        cfg, stages = self.config, self.config.stages
        per_sample = cfg.dac.range_mode is InputRange.PER_SAMPLE_ABSMAX
        n_levels = (1 << (cfg.dac.bits - 1)) - 1 if stages.dac and cfg.dac.bits is not None else 0
        v = np.empty(x.shape, dtype=x.dtype)
        scale = np.empty(x.shape[0], dtype=np.float64)
        _kernels.dac(x, per_sample, cfg.dac.input_max, stages.dac and not per_sample, n_levels,
                     cfg.tile.read_voltage_volt, v, np.empty((0, 0), dtype=x.dtype), scale)
        return v, scale

    def _nonlinear_array_currents(self, v: np.ndarray, state: ReadState, partial: np.ndarray) -> None:
        """Stage 6 for devices with a nonlinear I-V and IR drop: replace each partial's linear
        effective-matrix current ``v G_eff`` by the per-input Newton solve of the mesh (read noise stays
        the linearized model added by the GEMMs)."""
        grid, circuit, alpha = self.grid, self.config.circuit, self.profile.iv.sinh_alpha_per_volt
        g_dev = state.conductance_siemens
        analog = self.config.tile.differential is DifferentialReadout.ANALOG
        v64 = np.ascontiguousarray(v, dtype=np.float64)
        n_rt = grid.n_row_tiles
        for ch, linear in enumerate(state.signal_siemens):
            arrays = ((0, 1.0), (1, -1.0)) if analog else ((ch, 1.0),)
            for k, c, rs, cs in grid.tiles():
                p = ch * n_rt + k
                current = -(v64[:, rs] @ np.asarray(linear[rs, cs], dtype=np.float64))
                for a, sign in arrays:
                    sol = irdrop.solve_mesh(g_dev[a, rs, cs], v64[:, rs], circuit, sinh_alpha_per_volt=alpha, tile=(k, c))
                    current += sign * sol.column_current_amp
                partial[p][:, cs] += current.astype(partial.dtype, copy=False)

    def _tile_column_currents(self, g_signal: np.ndarray) -> np.ndarray:
        """Sum of |column current| per tile for an all-ones calibration input, (n_row_tiles, n_col_tiles)."""
        v = self.config.tile.read_voltage_volt
        out = np.empty((self.grid.n_row_tiles, self.grid.n_col_tiles))
        for k, c, rs, cs in self.grid.tiles():
            out[k, c] = np.abs(g_signal[rs, cs].sum(axis=0) * v).sum()
        return out

    def read_state(self, time_sec: float | None = None, temperature_kelvin: float | None = None, dtype: Any = np.float64) -> ReadState:
        """The cached :class:`ReadState` at a time and temperature (built on first use)."""
        t, temp = self._conditions(time_sec, temperature_kelvin)
        dt = np.dtype(dtype)
        if dt not in (np.float32, np.float64):
            raise ValueError(f"dtype = {dt} must be float32 or float64")
        key = (t, temp, dt.str)
        state = self._states.get(key)
        if state is None:
            state = self._build_read_state(t, temp, dt)
            self._states[key] = state
            if len(self._states) > _READ_STATE_CACHE:
                self._states.popitem(last=False)
        else:
            self._states.move_to_end(key)
        return state

    def _has_fresh_read_noise(self) -> bool:
        return self.config.stages.read_noise and has_fresh_read_noise(self.profile)

    def _build_read_state(self, t: float, temp: float, dt: np.dtype) -> ReadState:
        cfg, stages, grid = self.config, self.config.stages, self.grid
        g_dev = self._device_conductances(t, temp)
        g = self._array_conductances(g_dev)
        var = fresh_read_variance(g_dev, self.profile) if self._has_fresh_read_noise() else None
        if var is not None and stages.ir_drop:
            # Fresh device noise seen through the mesh, to first order (crossbar.irdrop, Notes).
            var = var * irdrop.read_noise_variance_scale(g_dev, g)

        if cfg.tile.differential is DifferentialReadout.ANALOG:
            signals = [g[0] - g[1]]
            variances = None if var is None else [var[0] + var[1]]
            signs = [1.0]
        else:
            signals = [g[0], g[1]]
            variances = None if var is None else [var[0], var[1]]
            signs = [1.0, -1.0]

        compensation = np.ones((grid.n_row_tiles, grid.n_col_tiles))
        if stages.drift_compensation:
            if self._reference_currents is None:
                g_ref = self._array_conductances(self.devices.programmed_siemens)
                self._reference_currents = self._tile_column_currents(g_ref[0] - g_ref[1])
            now = self._tile_column_currents(g[0] - g[1])
            compensation = np.where(now > 0, self._reference_currents / np.where(now > 0, now, 1.0), 1.0)

        v_read = cfg.tile.read_voltage_volt
        n_rt = grid.n_row_tiles
        gain = np.empty((len(signals) * n_rt, grid.out_features))
        for ch, sign in enumerate(signs):
            for k in range(n_rt):
                row = sign / (self.targets.siemens_per_weight[k] * v_read)
                for c in range(grid.n_col_tiles):
                    cs = grid.col_slice(c)
                    row[cs] *= compensation[k, c]
                gain[ch * n_rt + k] = row
        i_dev = self.profile.g_range_siemens * v_read
        fs = cfg.adc.full_scale_rel * i_dev if stages.adc else np.inf
        full_scale = np.full(len(signals) * n_rt, fs)

        g_dev.setflags(write=False)
        return ReadState(
            time_sec=t,
            temperature_kelvin=temp,
            conductance_siemens=g_dev,
            signal_siemens=tuple(_frozen(np.ascontiguousarray(s, dtype=dt)) for s in signals),
            variance_siemens2=None if variances is None else tuple(_frozen(np.ascontiguousarray(v, dtype=dt)) for v in variances),
            gain=_frozen(gain),
            full_scale_amp=_frozen(full_scale),
            drift_compensation=_frozen(compensation),
        )

    # ------------------------------------------------------------------ the MVM
    def ideal_matvec(self, x: Any) -> np.ndarray:
        """The exact digital product ``x W^T + b`` in float64 (the reference every error is measured against)."""
        x2, squeeze, _ = self._check_input(x)
        y = x2.astype(np.float64) @ self.weights.T
        if self.bias is not None:
            y += self.bias
        return y[0] if squeeze else y

    def _check_input(self, x: Any) -> tuple[np.ndarray, bool, np.dtype]:
        arr = _as_real_array(x, "x")
        if arr.ndim not in (1, 2) or arr.shape[-1] != self.in_features:
            raise ValueError(
                f"x has shape {arr.shape}; expected ({self.in_features},) or (batch, {self.in_features})"
            )
        dt = np.dtype(np.float32) if arr.dtype in (np.float16, np.float32) else np.dtype(np.float64)
        squeeze = arr.ndim == 1
        arr2 = np.ascontiguousarray(arr.reshape(1, -1) if squeeze else arr, dtype=dt)
        return arr2, squeeze, dt

    def matvec(
        self,
        x: Any,
        *,
        time_sec: float | None = None,
        temperature_kelvin: float | None = None,
        rng: np.random.Generator | None = None,
    ) -> np.ndarray:
        """Run the analog MVM ``y = f(W x + b)`` for one vector or a batch, with every enabled stage.

        Parameters
        ----------
        x : array_like, shape (in,) or (batch, in)
            Inputs; float32 in gives float32 out, anything else float64.
        time_sec : float, optional
            Time since programming, s (default: the profile's t0, no drift).
        temperature_kelvin : float, optional
            Chip temperature, K (default: the programming temperature).
        rng : numpy.random.Generator, optional
            Source of this call's noise seeds; default: the matrix's own read generator.

        Returns
        -------
        ndarray, shape (out,) or (batch, out)

        Notes
        -----
        Each vector of a batch is one MVM with its own fresh read noise (unless
        ``ReadNoiseSampling.PER_BATCH``). For independent Gaussian device noise the output noise of
        sample b on column i is exactly ``N(0, sum_j var_ji V_bj^2)``, obtained with one extra GEMM of
        the squared voltages with the variance matrix, without drawing batch x rows x cols numbers.
        """
        x2, squeeze, dt = self._check_input(x)
        state = self.read_state(time_sec, temperature_kelvin, dt)
        y = self._run(x2, state, dt, rng if rng is not None else self._rng)
        return y[0] if squeeze else y

    def _run(self, x: np.ndarray, state: ReadState, dt: np.dtype, gen: np.random.Generator, noise: dict[str, np.ndarray] | None = None) -> np.ndarray:
        cfg, stages, grid = self.config, self.config.stages, self.grid
        n_batch = x.shape[0]
        seeds = gen.integers(0, np.iinfo(np.uint64).max, size=2, dtype=np.uint64, endpoint=True)

        # Stage 5: DAC.
        per_sample = cfg.dac.range_mode is InputRange.PER_SAMPLE_ABSMAX
        quantize = stages.dac and cfg.dac.bits is not None
        n_levels = (1 << (cfg.dac.bits - 1)) - 1 if quantize else 0
        per_sample_var = state.variance_siemens2 is not None and cfg.read_noise_sampling is ReadNoiseSampling.PER_SAMPLE
        v = np.empty((n_batch, self.in_features), dtype=dt)
        v2 = np.empty((n_batch, self.in_features) if per_sample_var else (0, 0), dtype=dt)
        scale = np.empty(n_batch, dtype=dt)
        dac = _kernels.dac if x.size >= _PARALLEL_MIN_ELEMENTS else _kernels.dac_serial
        dac(x, per_sample, cfg.dac.input_max, stages.dac and not per_sample, n_levels, cfg.tile.read_voltage_volt, v, v2, scale)

        # Stages 4 and 6: read noise and the array currents (one GEMM per tile row and channel).
        matrices = state.signal_siemens
        if state.variance_siemens2 is not None and not per_sample_var:
            matrices = tuple(
                _noisy_matrix(m, var, np.uint64(seeds[1] + np.uint64(ch)))
                for ch, (m, var) in enumerate(zip(matrices, state.variance_siemens2))
            )
        n_rt = grid.n_row_tiles
        n_part = len(matrices) * n_rt
        partial = np.empty((n_part, n_batch, self.out_features), dtype=dt)
        partial_var = np.empty((n_part, n_batch, self.out_features) if per_sample_var else (0, 0, 0), dtype=dt)
        for ch, mat in enumerate(matrices):
            for k in range(n_rt):
                rs = grid.row_slice(k)
                p = ch * n_rt + k
                np.matmul(v[:, rs], mat[rs], out=partial[p])
                if per_sample_var:
                    np.matmul(v2[:, rs], state.variance_siemens2[ch][rs], out=partial_var[p])
        if stages.ir_drop and self.profile.iv.sinh_alpha_per_volt > 0:
            self._nonlinear_array_currents(v, state, partial)  # nonlinear I-V: per-input mesh solve

        # Stages 7-9: output noise, ADC, digital rescale and sum, bias, activation and its noise.
        i_dev = self.profile.g_range_siemens * cfg.tile.read_voltage_volt
        out_var = (cfg.adc.output_noise_std_rel * i_dev) ** 2 if stages.output_noise else 0.0
        adc_levels = (1 << (cfg.adc.bits - 1)) - 1 if stages.adc and cfg.adc.bits is not None else 0
        act = cfg.activation
        corr = act.correlated_std_rel if stages.activation_noise else 0.0
        unc = act.uncorrelated_std_rel if stages.activation_noise else 0.0
        bias = self.bias.astype(dt) if self.bias is not None else np.zeros(self.out_features, dtype=dt)
        noise = noise or {}
        y = np.empty((n_batch, self.out_features), dtype=dt)
        epilogue = _kernels.epilogue if partial.size >= _PARALLEL_MIN_ELEMENTS else _kernels.epilogue_serial
        epilogue(
            partial,
            partial_var,
            state.gain.astype(dt, copy=False),
            scale,
            state.full_scale_amp,
            adc_levels,
            per_sample_var or out_var > 0,
            out_var,
            bias,
            _kernels.ACTIVATION_CODES[act.function.value],
            act.kind.value == "multiplicative",
            corr,
            unc,
            seeds[0],
            _NOISE_CHUNK,
            noise.get("read", np.empty((0, 0, 0))),
            noise.get("corr", np.empty(0)),
            noise.get("unc", np.empty((0, 0))),
            y,
        )
        return y


def _frozen(a: np.ndarray) -> np.ndarray:
    a.setflags(write=False)
    return a


def _noisy_matrix(mat: np.ndarray, var: np.ndarray, seed: np.uint64) -> np.ndarray:
    """One weight-noise draw ``mat + sqrt(var) z`` for per-batch read noise."""
    out = np.empty_like(mat)
    kernel = _kernels.add_scaled_noise if mat.size >= _PARALLEL_MIN_ELEMENTS else _kernels.add_scaled_noise_serial
    kernel(mat, var, seed, _MATRIX_CHUNK, out)
    return out
