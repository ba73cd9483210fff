"""Activation-noise models, injection points and VANT's per-sample noise levels."""

from __future__ import annotations

import math

import pytest
import scipy.stats
import torch

from training.models import MLP
from training.noise import (
    ActivationNoise,
    GaussianNoiseSource,
    NoiseCorrelation,
    NoiseKind,
    VANTConfig,
    VANTNoiseSource,
    apply_gaussian_noise,
    injected_noise,
    noise_points,
    sample_vant_std,
)

ADD, MUL = NoiseKind.ADDITIVE, NoiseKind.MULTIPLICATIVE
UNC, COR = NoiseCorrelation.UNCORRELATED, NoiseCorrelation.CORRELATED


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("kind", [ADD, MUL], ids=["additive", "multiplicative"])
@pytest.mark.parametrize("correlation", [UNC, COR], ids=["uncorrelated", "correlated"])
def test_noise_has_the_stated_variance_and_sharing(kind, correlation):
    v = 0.25
    h = torch.full((4000, 64), 0.8, dtype=torch.float64)
    out = apply_gaussian_noise(h, math.sqrt(v), kind=kind, correlation=correlation, generator=_gen())
    # Additive: out - h = s n; multiplicative: out = h (1 + s n) -> (out - h) / h = s n.
    n = (out - h) if kind is ADD else (out - h) / h
    if correlation is COR:
        assert torch.allclose(n, n[:, :1].expand_as(n))  # one draw per sample, shared by the layer
        draws = n[:, 0]
    else:
        assert n[:, 0].std() > 0 and not torch.allclose(n[:, 0], n[:, 1])
        draws = n.reshape(-1)
    assert abs(float(draws.mean())) < 4 * math.sqrt(v / draws.numel())
    assert float(draws.var()) == pytest.approx(v, rel=6 * math.sqrt(2 / draws.numel()))


def test_correlated_noise_is_shared_over_channels_and_pixels():
    h = torch.zeros(3, 2, 4, 4)
    out = apply_gaussian_noise(h, 1.0, kind=ADD, correlation=COR, generator=_gen())
    for b in range(3):
        assert torch.all(out[b] == out[b, 0, 0, 0])
    assert len({float(out[b, 0, 0, 0]) for b in range(3)}) == 3


def test_same_seed_same_noise_and_zero_variance_is_identity():
    h = torch.rand(5, 7)
    a = apply_gaussian_noise(h, 0.3, kind=ADD, correlation=UNC, generator=_gen(7))
    b = apply_gaussian_noise(h, 0.3, kind=ADD, correlation=UNC, generator=_gen(7))
    assert torch.equal(a, b) and not torch.equal(a, h)
    assert torch.equal(apply_gaussian_noise(h, 0.0, kind=ADD, correlation=UNC), h)


def test_injected_noise_attaches_and_restores():
    model = MLP((6, 5, 5, 3), generator=_gen())
    x = torch.rand(4, 6)
    clean = model(x)
    source = GaussianNoiseSource(ActivationNoise(variance=1.0), generator=_gen())
    with injected_noise(model, source):
        assert all(p.source is source for p in noise_points(model))
        noisy = model(x)
    assert not torch.allclose(clean, noisy)
    assert all(p.source is None for p in noise_points(model))
    assert torch.equal(model(x), clean)


def test_injected_noise_needs_noise_points():
    with pytest.raises(ValueError, match="has no NoisePoint"):
        with injected_noise(torch.nn.Linear(2, 2), GaussianNoiseSource(ActivationNoise(variance=1.0))):
            pass


@pytest.mark.parametrize(
    "kwargs, field",
    [({"variance": -1.0}, "variance"), ({"variance": float("nan")}, "variance"),
     ({"variance": 1.0, "kind": "loud"}, "kind"), ({"variance": 1.0, "correlation": 3}, "correlation")],
    ids=["negative", "nan", "bad-kind", "bad-correlation"],
)
def test_activation_noise_validation_names_the_field(kwargs, field):
    with pytest.raises(ValueError, match=rf"ActivationNoise\.{field} = "):
        ActivationNoise(**kwargs)


def test_vant_std_follows_the_shifted_half_normal():
    cfg = VANTConfig(sigma_train=0.5, a=0.8, theta=0.3)
    s = sample_vant_std(cfg, 100_000, generator=_gen(3)).double()
    base = cfg.a * cfg.sigma_train
    assert float(s.min()) >= base
    assert float(s.mean()) == pytest.approx(base + cfg.theta * math.sqrt(2 / math.pi), rel=5e-3)
    assert float(s.var()) == pytest.approx(cfg.theta**2 * (1 - 2 / math.pi), rel=2e-2)
    ks = scipy.stats.kstest(((s - base) / cfg.theta).numpy(), scipy.stats.halfnorm.cdf)
    assert ks.pvalue > 1e-3


def test_vant_std_is_shared_by_all_layers_of_a_sample():
    cfg = VANTConfig(sigma_train=0.2, theta=1.0)
    source = VANTNoiseSource(cfg, 6, generator=_gen(5))
    for layer_width in (4000, 3000):  # two layers see the same per-sample std
        n = source(torch.zeros(6, layer_width, dtype=torch.float64))
        torch.testing.assert_close(n.std(dim=1), source.std.double(), rtol=0.06, atol=0.0)
    assert float(source.std.max() - source.std.min()) > 0.1  # and samples differ


def test_vant_validation():
    with pytest.raises(ValueError, match=r"VANTConfig\.theta = -0\.1"):
        VANTConfig(sigma_train=1.0, theta=-0.1)
    with pytest.raises(ValueError, match="batch_size"):
        sample_vant_std(VANTConfig(sigma_train=1.0), 0)
