"""Physics-informed loss: clip term, soft histogram, KL to pi_hw, gradients."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from training.physics_loss import (
    HardwarePrior,
    PhysicsInformedLoss,
    clip_penalty,
    kl_divergence,
    physics_informed_penalty,
    prior_from_counts,
    soft_histogram,
    uniform_level_prior,
)


def _dense_soft_histogram(x, edges, tau):
    e = torch.as_tensor(edges, dtype=x.dtype)
    m = torch.sigmoid((x[:, None] - e[None, :-1]) / tau) - torch.sigmoid((x[:, None] - e[None, 1:]) / tau)
    h = m.sum(0)
    return h / h.sum()


def test_clip_penalty_by_hand_and_gradient():
    w = torch.tensor([[-1.5, 0.2], [0.9, 2.0]], dtype=torch.float64, requires_grad=True)
    value = clip_penalty([w], 1.0)
    assert float(value.detach()) == pytest.approx(0.25 + 1.0)
    value.backward()
    torch.testing.assert_close(w.grad, torch.tensor([[-1.0, 0.0], [0.0, 2.0]], dtype=torch.float64))


def test_soft_histogram_matches_dense_formula_and_counts():
    edges = torch.linspace(-1, 1, 41, dtype=torch.float64)
    x = torch.rand(500, dtype=torch.float64, generator=torch.Generator().manual_seed(0)) * 1.8 - 0.9
    tau = 0.25 * 0.05
    p = soft_histogram(x, edges, tau)
    torch.testing.assert_close(p, _dense_soft_histogram(x, edges, tau), atol=1e-9, rtol=0)
    # With a narrow kernel it approaches the hard histogram.
    hard = torch.histogram(x, bins=edges).hist / 500
    torch.testing.assert_close(soft_histogram(x, edges, 1e-9), hard, atol=1e-9, rtol=0)


def test_kl_divergence_by_hand():
    p = torch.tensor([0.5, 0.5, 0.0])
    q = torch.tensor([0.25, 0.25, 0.5])
    assert float(kl_divergence(p, q)) == pytest.approx(math.log(2.0))
    assert float(kl_divergence(q, q)) == pytest.approx(0.0, abs=1e-7)


def test_soft_histogram_kl_gradient_is_exact():
    edges = (-1.0, -0.5, 0.0, 0.5, 1.0)
    q = torch.tensor([0.1, 0.2, 0.3, 0.4], dtype=torch.float64)
    x = torch.tensor([-0.8, -0.3, -0.1, 0.2, 0.35, 0.7, 0.9], dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda v: kl_divergence(soft_histogram(v, edges, 0.1), q), (x,))


def test_kl_term_is_small_for_weights_spread_like_the_prior():
    prior = uniform_level_prior(2, 1.0)  # levels -1, 0, 1
    cfg = PhysicsInformedLoss(lambda_clip=0.0, lambda_kl=1.0, w_max=1.0, bits=2)
    concentrated = torch.zeros(90, dtype=torch.float64)
    spread = torch.tensor([-1.0, 0.0, 1.0] * 30, dtype=torch.float64)
    lo = physics_informed_penalty([spread], config=cfg, prior=prior)
    hi = physics_informed_penalty([concentrated], config=cfg, prior=prior)
    # All weights at 0 with tau = step / 4: membership sigma(2) - sigma(-2) in the home bin and
    # sigma(-2) - sigma(-6) in each neighbour, so p = (m1, m0, m1) / (m0 + 2 m1) against q = 1/3 each.
    sig = lambda t: 1.0 / (1.0 + math.exp(-t))  # noqa: E731
    m0, m1 = sig(2) - sig(-2), sig(-2) - sig(-6)
    p = [m1 / (m0 + 2 * m1), m0 / (m0 + 2 * m1), m1 / (m0 + 2 * m1)]
    assert float(hi) == pytest.approx(sum(pi * math.log(3 * pi) for pi in p), rel=1e-9)
    assert float(lo) < 0.01 < float(hi)


def test_physics_penalty_combines_terms_and_reaches_weights():
    prior = uniform_level_prior(4, 0.5)
    w = torch.tensor([[0.7, -0.1], [0.05, -0.6]], dtype=torch.float64, requires_grad=True)
    both = physics_informed_penalty([w], config=PhysicsInformedLoss(lambda_clip=2.0, lambda_kl=0.5, w_max=0.5),
                                    prior=prior)
    clip_only = physics_informed_penalty([w], config=PhysicsInformedLoss(lambda_clip=2.0, lambda_kl=0.0, w_max=0.5),
                                         prior=prior)
    kl_only = physics_informed_penalty([w], config=PhysicsInformedLoss(lambda_clip=0.0, lambda_kl=0.5, w_max=0.5),
                                       prior=prior)
    assert float(clip_only.detach()) == pytest.approx(2.0 * (0.2**2 + 0.1**2))
    assert float(both.detach()) == pytest.approx(float(clip_only.detach()) + float(kl_only.detach()))
    both.backward()
    assert torch.isfinite(w.grad).all() and w.grad.abs().sum() > 0


def test_uniform_level_prior_is_centred_on_levels():
    prior = uniform_level_prior(3, 1.5)  # levels k * 0.5, k = -3..3
    assert prior.n_bins == 7 and sum(prior.probabilities) == pytest.approx(1.0)
    assert prior.bin_edges[0] == pytest.approx(-1.75) and prior.bin_edges[-1] == pytest.approx(1.75)
    centres = [(a + b) / 2 for a, b in zip(prior.bin_edges, prior.bin_edges[1:])]
    assert centres == pytest.approx([-1.5, -1.0, -0.5, 0.0, 0.5, 1.0, 1.5])


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"bin_edges": (0.0, 1.0), "probabilities": (0.5, 0.5)}, "needs? 1 bins|1 bins need"),
        ({"bin_edges": (0.0, -1.0, 1.0), "probabilities": (0.5, 0.5)}, "strictly ascending"),
        ({"bin_edges": (0.0, 1.0, 2.0), "probabilities": (0.7, 0.7)}, "sum to 1"),
        ({"bin_edges": (0.0, 1.0, 2.0), "probabilities": (1.5, -0.5)}, ">= 0"),
    ],
    ids=["count", "order", "sum", "negative"],
)
def test_hardware_prior_validation(kwargs, message):
    with pytest.raises(ValueError, match=message):
        HardwarePrior(**kwargs)


def test_prior_must_cover_the_range():
    prior = uniform_level_prior(4, 0.5)
    with pytest.raises(ValueError, match="must cover"):
        physics_informed_penalty([torch.zeros(2, 2)], config=PhysicsInformedLoss(w_max=1.0), prior=prior)


def test_prior_from_counts_normalizes_a_measured_histogram():
    prior = prior_from_counts((-1.0, 0.0, 0.5, 1.0), [2, 6, 0], source="measured")
    assert prior.probabilities == pytest.approx((0.25, 0.75, 0.0)) and prior.source == "measured"
    with pytest.raises(ValueError, match="all zero"):
        prior_from_counts((0.0, 1.0), [0], source="x")
    with pytest.raises(ValueError, match="finite numbers >= 0"):
        prior_from_counts((0.0, 1.0, 2.0), [1, -1], source="x")
    with pytest.raises(ValueError, match="2 bins need"):
        prior_from_counts((0.0, 1.0, 2.0), [1, 1, 1], source="x")


def test_weighted_soft_histogram_equals_the_histogram_of_repeated_values():
    edges = (-1.0, -0.3, 0.2, 1.0)
    values = torch.tensor([-0.5, 0.0, 0.7], dtype=torch.float64)
    counts = torch.tensor([3.0, 1.0, 2.0], dtype=torch.float64)
    repeated = values.repeat_interleave(counts.long())
    torch.testing.assert_close(soft_histogram(values, edges, 0.1, weights=counts), soft_histogram(repeated, edges, 0.1))
    with pytest.raises(ValueError, match="weights"):
        soft_histogram(values, edges, 0.1, weights=-counts)


def test_physics_penalty_groups_levels_without_changing_value_or_gradient():
    """The level-grouped KL term equals the per-value formula, in value and in gradient."""
    cfg = PhysicsInformedLoss(lambda_clip=0.0, lambda_kl=1.0, w_max=1.0, bits=3)
    prior = uniform_level_prior(3, 1.0)
    w = torch.linspace(-1.2, 1.1, 97, dtype=torch.float64).reshape(1, -1).requires_grad_()
    grouped = physics_informed_penalty([w], config=cfg, prior=prior)
    (g_grouped,) = torch.autograd.grad(grouped, w)
    w2 = w.detach().clone().requires_grad_()
    edges = torch.tensor(prior.bin_edges, dtype=torch.float64)
    q = torch.tensor(prior.probabilities, dtype=torch.float64)
    tau = cfg.bandwidth_rel * float((edges[1:] - edges[:-1]).min())
    from training.quantization import quantize_ste

    direct = kl_divergence(_dense_soft_histogram(quantize_ste(w2.reshape(-1), bits=3, x_max=1.0), edges, tau), q)
    (g_direct,) = torch.autograd.grad(direct, w2)
    torch.testing.assert_close(grouped, direct, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(g_grouped, g_direct, rtol=1e-10, atol=1e-12)
    assert g_grouped.abs().sum() > 0


# ---------------------------------------------------------------------------------------------------------
# pi_hw measured on the chip (a characterization) as the prior


def _characterization(bits: int = 4):
    import numpy as np

    from crossbar import Chip, ChipConfig, CharacterizationProtocol, MatrixKind, TileConfig, characterize, probe_matrix

    w = probe_matrix(MatrixKind.GAUSSIAN, (24, 40), seed=3)
    chip = Chip("pcm", ChipConfig(tile=TileConfig(rows=32, cols=16)), seed=3)
    protocol = CharacterizationProtocol(n_inputs=256, pi_hw_bits=bits, times_sec=(), temperatures_kelvin=(), seed=3)
    char = characterize(chip, {"w": np.asarray(w)}, protocol=protocol)
    return char


def test_prior_from_pi_hw_keeps_the_measured_occupancy_on_the_loss_grid():
    from training.physics_loss import prior_from_pi_hw

    char = _characterization(bits=4)
    prior = prior_from_pi_hw(char.pi_hw)
    assert prior.probabilities == pytest.approx(tuple(char.pi_hw.probabilities), abs=1e-12)
    # the same bin layout as the loss's level grid: Q_b's levels at the bin centres
    assert prior.bin_edges == pytest.approx(uniform_level_prior(4, 1.0).bin_edges, abs=1e-12)
    assert max(prior.probabilities) > 2 * min(prior.probabilities)  # measured, not uniform
    half = prior_from_pi_hw(char.pi_hw, w_max=0.5)
    assert half.bin_edges == pytest.approx(tuple(0.5 * e for e in prior.bin_edges), abs=1e-12)
    assert half.probabilities == pytest.approx(prior.probabilities, abs=1e-12)
    with pytest.raises(ValueError, match="expected crossbar.fitting.PiHW"):
        prior_from_pi_hw(object())


def test_read_hardware_prior_from_a_characterization_file(tmp_path):
    from crossbar import write_characterization
    from crossbar.hdf5io import HDF5FormatError
    from training.physics_loss import prior_from_pi_hw, read_hardware_prior

    char = _characterization(bits=3)
    path = tmp_path / "chip.h5"
    write_characterization(path, char)
    prior, bits = read_hardware_prior(path)
    assert bits == 3
    assert prior.probabilities == pytest.approx(prior_from_pi_hw(char.pi_hw).probabilities, abs=1e-12)
    assert str(path) in prior.source
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(HDF5FormatError):
        read_hardware_prior(path)


def test_physics_informed_recipe_uses_the_measured_prior():
    from training.pipeline import Method, recipe_for

    char = _characterization(bits=4)
    with pytest.raises(ValueError, match="needs pi_hw"):
        recipe_for(Method.PHYSICS_INFORMED, 0.01)
    recipe = recipe_for("physics_informed", 0.01, pi_hw=char.pi_hw)
    assert recipe.physics.lambda_kl == 0.01 and recipe.physics.bits == 4 and recipe.physics.w_max == 1.0
    assert recipe.prior.probabilities == pytest.approx(tuple(char.pi_hw.probabilities), abs=1e-12)
    # a step of the loss's gradient moves the weights' quantized histogram towards the measured prior
    weights = [torch.randn(30, 40, generator=torch.Generator().manual_seed(0)).mul_(0.8).requires_grad_()]
    config = dataclasses.replace(recipe.physics, lambda_clip=0.0, lambda_kl=1.0)
    before = physics_informed_penalty(weights, config=config, prior=recipe.prior)
    before.backward()
    with torch.no_grad():
        moved = [weights[0] - 0.02 * weights[0].grad / weights[0].grad.abs().max()]  # |step| <= 0.02
    after = physics_informed_penalty(moved, config=config, prior=recipe.prior)
    assert after.item() < before.detach().item()
