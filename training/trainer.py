"""The training loop: one recipe of methods, seeded, checkpointed every epoch, resumable bit for bit.

A :class:`Recipe` says which methods are on: noise-aware training (fixed activation noise), VANT
(per-sample noise level), the explainable regularizers, the physics-informed loss and distillation from a
clean teacher. Quantization-aware training is a property of the model (:func:`training.quantization.prepare_qat`)
and the stochastic residual layers are blocks of the model (:class:`training.models.ResidualMLP`).

Every random draw of a run (data order, activation noise, VANT levels, SRL noise) comes from one
``torch.Generator`` seeded with :attr:`TrainConfig.seed`. After every epoch the trainer writes a checkpoint
holding the model and optimizer state, the generator state, the epoch and the history; a new trainer
pointed at the same file resumes from the last completed epoch and reaches the same final weights as an
uninterrupted run.
"""

from __future__ import annotations

import enum
import math
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from training._checks import check_enum, check_float, check_int, check_optional_instance, check_positive_ints
from training.checkpoint import load_checkpoint, save_checkpoint
from training.datasets import Dataset
from training.distillation import Distillation, distillation_loss
from training.evaluation import evaluate_accuracy
from training.models import ForwardTrace, NoiseAwareModel
from training.noise import ActivationNoise, GaussianNoiseSource, NoiseSource, VANTConfig, VANTNoiseSource, injected_noise
from training.physics_loss import HardwarePrior, PhysicsInformedLoss, physics_informed_penalty
from training.regularizers import ExplainableRegularization, explainable_penalty
from training.srl import bind_generator

__all__ = ["CHECKPOINT_FORMAT", "LRSchedule", "OptimizerKind", "Recipe", "TrainConfig", "TrainHistory", "Trainer"]

CHECKPOINT_FORMAT = 1
"""Version of the checkpoint layout written by :class:`Trainer`."""


class LRSchedule(enum.Enum):
    """How the learning rate evolves over the epochs (a function of the epoch only, so resuming is exact)."""

    CONSTANT = "constant"
    """``learning_rate`` throughout."""
    COSINE = "cosine"
    """``learning_rate * (1 + cos(pi * epoch / epochs)) / 2`` in epoch ``epoch`` (0-based)."""


class OptimizerKind(enum.Enum):
    """Which optimizer updates the weights."""

    ADAM = "adam"
    """torch.optim.Adam."""
    SGD = "sgd"
    """torch.optim.SGD with momentum."""


@dataclass(frozen=True, kw_only=True)
class TrainConfig:
    """Optimization settings of one run."""

    epochs: int
    """Number of passes over the training set."""
    batch_size: int = 128
    """Samples per step."""
    learning_rate: float = 1e-3
    """Step size of the optimizer."""
    optimizer: OptimizerKind = OptimizerKind.ADAM
    """Adam or SGD."""
    lr_schedule: LRSchedule = LRSchedule.CONSTANT
    """Constant or cosine-decayed learning rate."""
    momentum: float = 0.9
    """Momentum of SGD (ignored by Adam)."""
    weight_decay: float = 0.0
    """L2 weight decay passed to the optimizer."""
    seed: int = 0
    """Seed of the run's generator (data order and every noise draw)."""

    def __post_init__(self) -> None:
        check_int(self, "epochs", 1, 1_000_000)
        check_int(self, "batch_size", 1, 1 << 24)
        check_float(self, "learning_rate", 0.0, 10.0, open_low=True)
        check_enum(self, "optimizer", OptimizerKind)
        check_enum(self, "lr_schedule", LRSchedule)
        check_float(self, "momentum", 0.0, 1.0)
        check_float(self, "weight_decay", 0.0, 10.0)
        check_int(self, "seed", 0, (1 << 63) - 1)


@dataclass(frozen=True, kw_only=True)
class Recipe:
    """Which robustness methods a run uses (all off: standard training)."""

    train_noise: tuple[ActivationNoise, ...] = ()
    """Noise-aware training: activation noise injected at every noise point during training."""
    vant: VANTConfig | None = None
    """VANT: per-sample noise std a sigma_train + theta |z| shared by all layers (exclusive with train_noise)."""
    explainable: ExplainableRegularization | None = None
    """Explainable regularizers (needs a :class:`~training.models.NoiseAwareModel`)."""
    physics: PhysicsInformedLoss | None = None
    """Physics-informed loss on the model's programmed weights (needs ``prior``)."""
    prior: HardwarePrior | None = None
    """pi_hw of the physics-informed loss."""
    distillation: Distillation | None = None
    """Distill from the trainer's clean ``teacher`` (needs one)."""

    def __post_init__(self) -> None:
        noise = self.train_noise
        if isinstance(noise, ActivationNoise):
            noise = (noise,)
        noise = tuple(noise)
        for n in noise:
            if not isinstance(n, ActivationNoise):
                raise ValueError(f"Recipe.train_noise must hold ActivationNoise objects, got {n!r}")
        object.__setattr__(self, "train_noise", noise)
        check_optional_instance(self, "vant", VANTConfig)
        check_optional_instance(self, "explainable", ExplainableRegularization)
        check_optional_instance(self, "physics", PhysicsInformedLoss)
        check_optional_instance(self, "prior", HardwarePrior)
        check_optional_instance(self, "distillation", Distillation)
        if self.vant is not None and noise:
            raise ValueError("Recipe.vant and Recipe.train_noise are exclusive: VANT sets its own noise level")
        if self.physics is not None and self.prior is None:
            raise ValueError("Recipe.physics needs Recipe.prior (pi_hw), e.g. uniform_level_prior(bits, w_max)")


@dataclass
class TrainHistory:
    """Per-epoch record of a run."""

    train_loss: list[float] = field(default_factory=list)
    """Mean training objective per epoch (loss plus penalties)."""
    eval_accuracy: list[float] = field(default_factory=list)
    """Clean accuracy on the evaluation split after each epoch (empty without one)."""
    eval_noisy_accuracy: list[float] = field(default_factory=list)
    """Accuracy on the evaluation split under :attr:`Trainer.eval_noise` after each epoch (empty without
    one): mean over ``eval_noise_draws`` draws, each from a generator seeded by the run's seed and the epoch,
    so evaluating never perturbs the training stream."""

    @property
    def epochs_completed(self) -> int:
        return len(self.train_loss)


StepCallback = Callable[[int, int], None]
"""Called as ``callback(epoch, step)`` after every optimizer step (0-based)."""


class Trainer:
    """Train ``model`` on ``train_data`` with a :class:`Recipe`, checkpointing every epoch.

    Parameters
    ----------
    model : nn.Module
        The network; models of :mod:`training.models` support every method, any module mapping images to
        logits supports the noise-free, distillation and physics-informed parts.
    train_data : Dataset
        Training split.
    config : TrainConfig
        Optimization settings and seed.
    recipe : Recipe
        Robustness methods.
    eval_data : Dataset, optional
        Split scored (clean) after every epoch, for convergence curves.
    teacher : nn.Module, optional
        Clean teacher for distillation (kept in eval mode, never noisy, never updated).
    checkpoint_path : path, optional
        Where to write the checkpoint every epoch; an existing checkpoint there is resumed.
    progress : bool
        Show tqdm progress bars.
    step_callback : callable, optional
        ``callback(epoch, step)`` after every step (tests use it to simulate an interruption).
    epoch_start_callback : callable, optional
        ``callback(epoch)`` at the start of every epoch that is trained (0-based), after a resume too; the
        calibration loop (:mod:`training.calibration`) re-measures the chip and updates the surrogate here.
        It must be a deterministic function of the epoch and the model's state for resuming to stay exact.
    eval_noise : ActivationNoise or sequence of them, optional
        Also score ``eval_data`` under this activation noise after every epoch
        (:attr:`TrainHistory.eval_noisy_accuracy`), for convergence curves of the noisy accuracy.
    eval_noise_draws : int
        Noise draws averaged per epoch for ``eval_noise``.
    eval_batch_size : int
        Samples per forward pass of the per-epoch evaluations.
    """

    def __init__(
        self,
        model: nn.Module,
        train_data: Dataset,
        *,
        config: TrainConfig,
        recipe: Recipe | None = None,
        eval_data: Dataset | None = None,
        teacher: nn.Module | None = None,
        checkpoint_path: str | os.PathLike[str] | None = None,
        progress: bool = True,
        step_callback: StepCallback | None = None,
        epoch_start_callback: Callable[[int], None] | None = None,
        eval_noise: ActivationNoise | tuple[ActivationNoise, ...] | None = None,
        eval_noise_draws: int = 1,
        eval_batch_size: int = 2000,
    ):
        if not isinstance(config, TrainConfig):
            raise ValueError(f"config = {config!r} must be a TrainConfig")
        recipe = Recipe() if recipe is None else recipe
        if not isinstance(recipe, Recipe):
            raise ValueError(f"recipe = {recipe!r} must be a Recipe")
        if recipe.distillation is not None and teacher is None:
            raise ValueError("Recipe.distillation needs a teacher model")
        if recipe.explainable is not None and not isinstance(model, NoiseAwareModel):
            raise ValueError("Recipe.explainable needs a NoiseAwareModel (MLP, SmallCNN, ResidualMLP)")
        if len(train_data) == 0:
            raise ValueError("train_data is empty")
        if eval_noise is not None and eval_data is None:
            raise ValueError("eval_noise needs eval_data")
        check_positive_ints(eval_noise_draws=eval_noise_draws)
        self.eval_noise = eval_noise
        self.eval_noise_draws = eval_noise_draws
        self.eval_batch_size = eval_batch_size
        self.model = model
        self.train_data = train_data
        self.config = config
        self.recipe = recipe
        self.eval_data = eval_data
        self.teacher = teacher
        self.checkpoint_path = None if checkpoint_path is None else Path(checkpoint_path)
        self.progress = progress
        self.step_callback = step_callback
        self.epoch_start_callback = epoch_start_callback
        self.generator = torch.Generator().manual_seed(config.seed)
        self.optimizer = self._make_optimizer()
        self.history = TrainHistory()

    # ---------------------------------------------------------------------------------------------

    def _make_optimizer(self) -> torch.optim.Optimizer:
        c = self.config
        params = [p for p in self.model.parameters() if p.requires_grad]
        if c.optimizer is OptimizerKind.ADAM:
            return torch.optim.Adam(params, lr=c.learning_rate, weight_decay=c.weight_decay)
        return torch.optim.SGD(params, lr=c.learning_rate, momentum=c.momentum, weight_decay=c.weight_decay)

    def learning_rate_at(self, epoch: int) -> float:
        """Learning rate used during ``epoch`` (0-based)."""
        c = self.config
        if c.lr_schedule is LRSchedule.COSINE:
            return c.learning_rate * 0.5 * (1.0 + math.cos(math.pi * epoch / c.epochs))
        return c.learning_rate

    def _fingerprint(self) -> str:
        return f"{type(self.model).__name__}|{len(self.train_data)}|{self.config!r}|{self.recipe!r}"

    def _noise_source(self, batch_size: int) -> NoiseSource | None:
        r = self.recipe
        if r.vant is not None:
            return VANTNoiseSource(r.vant, batch_size, generator=self.generator)
        if r.train_noise:
            return GaussianNoiseSource(r.train_noise, generator=self.generator)
        return None

    def _forward(self, x: torch.Tensor) -> ForwardTrace:
        if isinstance(self.model, NoiseAwareModel):
            return self.model.trace(x)
        return ForwardTrace(self.model(x), ())

    def _objective(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        r = self.recipe
        with injected_noise(self.model, self._noise_source(x.shape[0])):
            trace = self._forward(x)
        if r.distillation is not None and self.teacher is not None:  # a teacher is checked in __init__
            with torch.no_grad():
                teacher_logits = self.teacher(x)
            loss = distillation_loss(trace.logits, teacher_logits, y, r.distillation)
        else:
            loss = F.cross_entropy(trace.logits, y)
        if r.explainable is not None and isinstance(self.model, NoiseAwareModel):  # checked in __init__
            loss = loss + explainable_penalty(self.model, trace, r.explainable)
        if r.physics is not None and r.prior is not None:  # a prior is checked in Recipe
            if isinstance(self.model, NoiseAwareModel):
                weights = self.model.programmed_weights()
            else:
                weights = [m.weight for m in self.model.modules() if isinstance(m, (nn.Linear, nn.Conv2d))]
            loss = loss + physics_informed_penalty(weights, config=r.physics, prior=r.prior)
        return loss

    def _state(self, epochs_completed: int) -> dict[str, Any]:
        return {
            "format": CHECKPOINT_FORMAT,
            "fingerprint": self._fingerprint(),
            "epochs_completed": epochs_completed,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "generator": self.generator.get_state(),
            "train_loss": list(self.history.train_loss),
            "eval_accuracy": list(self.history.eval_accuracy),
            "eval_noisy_accuracy": list(self.history.eval_noisy_accuracy),
        }

    def _resume(self) -> None:
        if self.checkpoint_path is None or not self.checkpoint_path.exists():
            return
        state = load_checkpoint(self.checkpoint_path)
        if state.get("format") != CHECKPOINT_FORMAT:
            raise ValueError(f"{self.checkpoint_path}: checkpoint format {state.get('format')!r} is not "
                             f"{CHECKPOINT_FORMAT}")
        if state.get("fingerprint") != self._fingerprint():
            raise ValueError(f"{self.checkpoint_path}: checkpoint belongs to a different run (model, data, "
                             "config or recipe differ); use another checkpoint_path")
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.generator.set_state(state["generator"])
        self.history = TrainHistory(
            train_loss=[float(v) for v in state["train_loss"]],
            eval_accuracy=[float(v) for v in state["eval_accuracy"]],
            eval_noisy_accuracy=[float(v) for v in state.get("eval_noisy_accuracy", [])],
        )

    def _evaluate_epoch(self, epoch: int) -> None:
        assert self.eval_data is not None  # the caller checks
        bs = self.eval_batch_size
        self.history.eval_accuracy.append(evaluate_accuracy(self.model, self.eval_data, batch_size=bs))
        if self.eval_noise is not None:
            # Own stream per epoch: evaluation never consumes draws of the training generator.
            gen = torch.Generator().manual_seed((self.config.seed * 1_000_003 + epoch + 1) % (1 << 63))
            scores = [
                evaluate_accuracy(self.model, self.eval_data, noise=self.eval_noise, generator=gen, batch_size=bs)
                for _ in range(self.eval_noise_draws)
            ]
            self.history.eval_noisy_accuracy.append(sum(scores) / len(scores))

    # ---------------------------------------------------------------------------------------------

    def fit(self) -> TrainHistory:
        """Train until ``config.epochs`` epochs are completed (resuming from the checkpoint if present)."""
        from tqdm.auto import tqdm

        self._resume()
        bind_generator(self.model, self.generator)
        if self.teacher is not None:
            self.teacher.eval()
        device = next((p.device for p in self.model.parameters()), torch.device("cpu"))
        n, bs = len(self.train_data), self.config.batch_size
        for epoch in range(self.history.epochs_completed, self.config.epochs):
            if self.epoch_start_callback is not None:
                self.epoch_start_callback(epoch)
            self.model.train()
            for group in self.optimizer.param_groups:
                group["lr"] = self.learning_rate_at(epoch)
            order = torch.randperm(n, generator=self.generator)
            total, steps = 0.0, 0
            bar = tqdm(range(0, n, bs), desc=f"epoch {epoch + 1}/{self.config.epochs}",
                       disable=not self.progress, leave=False)
            for step, start in enumerate(bar):
                idx = order[start : start + bs]
                x = self.train_data.images[idx].to(device)
                y = self.train_data.labels[idx].to(device)
                loss = self._objective(x, y)
                if not torch.isfinite(loss):
                    raise FloatingPointError(f"training objective became {float(loss.detach())} at epoch {epoch + 1}, "
                                             f"step {step + 1}; lower the learning rate or the penalties")
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                self.optimizer.step()
                total += float(loss.detach())
                steps += 1
                if self.progress and step % 20 == 0:
                    bar.set_postfix(loss=f"{total / steps:.4f}")
                if self.step_callback is not None:
                    self.step_callback(epoch, step)
            bar.close()
            self.history.train_loss.append(total / max(steps, 1))
            if self.eval_data is not None:
                self._evaluate_epoch(epoch)
            if self.checkpoint_path is not None:
                save_checkpoint(self.checkpoint_path, self._state(epoch + 1))
        self.model.eval()
        return self.history
