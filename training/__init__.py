"""Training networks that survive analog hardware: methods, evaluation, data and the study pipeline.

Pure-torch parts: models with activation-noise injection points, noise models (additive/multiplicative,
correlated/uncorrelated), noise-aware training and VANT, the explainable regularizers, stochastic residual
layers with the physics-informed loss, quantization-aware training, distillation, evaluation sweeps,
datasets (MNIST, Fashion-MNIST, CIFAR-10 and an embedded MNIST subset) and a resumable trainer.
"""

from training.activations import ActivationKind, PhotonicSigmoid, activation_derivative, make_activation, photonic_sigmoid
from training.checkpoint import load_checkpoint, save_checkpoint
from training.datasets import (
    Dataset,
    DatasetSplits,
    load_cifar10,
    load_embedded_mnist,
    load_fashion_mnist,
    load_mnist,
    read_idx,
    write_idx,
)
from training.distillation import Distillation, distillation_loss
from training.evaluation import (
    NoiseSweep,
    epochs_to_fraction_of_best,
    evaluate_accuracy,
    log_spaced_variances,
    noise_sweep,
    perturbed_weights,
    weight_noise_sweep,
)
from training.models import MLP, ForwardTrace, NoiseAwareModel, ResidualMLP, SmallCNN
from training.noise import (
    ActivationNoise,
    GaussianNoiseSource,
    NoiseCorrelation,
    NoiseKind,
    NoisePoint,
    VANTConfig,
    VANTNoiseSource,
    apply_gaussian_noise,
    injected_noise,
    sample_vant_std,
)
from training.physics_loss import (
    HardwarePrior,
    PhysicsInformedLoss,
    clip_penalty,
    kl_divergence,
    physics_informed_penalty,
    soft_histogram,
    uniform_level_prior,
)
from training.quantization import prepare_qat, quantization_levels, quantize_ste, strip_qat
from training.regularizers import (
    ExplainableRegularization,
    explainable_penalty,
    l2_penalty,
    row_sum_penalty,
    saturation_penalty,
)
from training.srl import SRLConfig, SRLMode, StochasticResidualLayer, bind_generator
from training.trainer import LRSchedule, OptimizerKind, Recipe, TrainConfig, TrainHistory, Trainer

__all__ = [
    "MLP",
    "ActivationKind",
    "ActivationNoise",
    "Dataset",
    "DatasetSplits",
    "Distillation",
    "ExplainableRegularization",
    "ForwardTrace",
    "GaussianNoiseSource",
    "HardwarePrior",
    "NoiseAwareModel",
    "NoiseCorrelation",
    "NoiseKind",
    "LRSchedule",
    "NoisePoint",
    "NoiseSweep",
    "OptimizerKind",
    "PhotonicSigmoid",
    "PhysicsInformedLoss",
    "Recipe",
    "ResidualMLP",
    "SRLConfig",
    "SRLMode",
    "SmallCNN",
    "StochasticResidualLayer",
    "TrainConfig",
    "TrainHistory",
    "Trainer",
    "VANTConfig",
    "VANTNoiseSource",
    "activation_derivative",
    "apply_gaussian_noise",
    "bind_generator",
    "clip_penalty",
    "distillation_loss",
    "epochs_to_fraction_of_best",
    "evaluate_accuracy",
    "explainable_penalty",
    "injected_noise",
    "kl_divergence",
    "l2_penalty",
    "load_checkpoint",
    "load_cifar10",
    "load_embedded_mnist",
    "load_fashion_mnist",
    "load_mnist",
    "log_spaced_variances",
    "make_activation",
    "noise_sweep",
    "perturbed_weights",
    "photonic_sigmoid",
    "physics_informed_penalty",
    "prepare_qat",
    "quantization_levels",
    "quantize_ste",
    "read_idx",
    "row_sum_penalty",
    "sample_vant_std",
    "save_checkpoint",
    "saturation_penalty",
    "soft_histogram",
    "strip_qat",
    "uniform_level_prior",
    "weight_noise_sweep",
    "write_idx",
]
