"""Device profiles: every shipped profile loads; malformed ones are rejected with one clear line."""

from __future__ import annotations

import dataclasses
import math
import re
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import norm

from crossbar import DeviceProfile, ProfileError, list_profiles, load_profile
from crossbar.config import Stages
from crossbar.drift import drift_exponent_distribution
from crossbar.programming import program_devices

REQUIRED_TECHNOLOGIES = {"pcm", "rram_hfox", "ideal"}


def test_shipped_profiles_include_the_required_technologies() -> None:
    names = set(list_profiles())
    assert REQUIRED_TECHNOLOGIES <= names
    assert names & {"ecram", "fefet"}, "at least one of ECRAM or FeFET must ship"


@pytest.mark.parametrize("name", list_profiles())
def test_every_shipped_profile_loads_and_cites_every_number(name: str) -> None:
    p = load_profile(name)
    assert isinstance(p, DeviceProfile) and p.name == name
    assert p.conductance.g_min_siemens < p.conductance.g_max_siemens
    assert p.source.references and p.toml_text
    # the loader already requires a citation per number; here: no reference is listed but never used
    cited = " ".join(p.source.fields.values())
    for key in p.source.references:
        assert key in cited, f"{name}: reference {key!r} is cited by no field"
    if name != "ideal":
        for ref in p.source.references.values():
            assert re.search(r"doi|arXiv|https?://", ref, re.IGNORECASE), f"{name}: reference without DOI/link: {ref}"


def test_user_profile_loads_from_a_path(tmp_path: Path) -> None:
    text = load_profile("pcm").toml_text.replace('name = "pcm"', 'name = "my-pcm"')
    path = tmp_path / "mine.toml"
    path.write_text(text)
    p = load_profile(path)
    assert p.name == "my-pcm" and p.path == str(path)


def _ideal_text() -> str:
    return load_profile("ideal").toml_text


MALFORMED = {
    "unknown-key": (
        lambda t: t.replace("g_max_siemens = 1.0e-5", "g_max_siemens = 1.0e-5\ng_max_us = 10"),
        r"unknown key 'g_max_us' in \[conductance\]",
    ),
    "wrong-unit": (lambda t: t.replace("g_max_siemens = 1.0e-5", "g_max_siemens = 10.0"), r"conductance.g_max_siemens = 10 S"),
    "gmin-above-gmax": (lambda t: t.replace("g_min_siemens = 0.0", "g_min_siemens = 2.0e-5"), r"g_min_siemens = 2e-05 S must be <"),
    "negative-spread": (
        lambda t: t.replace("[source]", '[drift]\nnu_std = -0.01\n[source]').replace(
            '"conductance.g_min_siemens" = "convention"', '"conductance.g_min_siemens" = "convention", "drift.nu_std" = "convention"'
        ),
        r"drift.nu_std = -0.01",
    ),
    "uncited-number": (lambda t: t.replace("[source]", "[drift]\nnu_mean = 0.05\n[source]"), r"no entry for 'drift.nu_mean'"),
    "drift-slope-without-reference": (
        lambda t: _with_drift(t, nu_mean="0.05", nu_mean_log_slope="-0.01"),
        r"drift.nu_g_ref_siemens = 0 S must be > 0 S",
    ),
    "drift-clip-inverted": (
        lambda t: _with_drift(t, nu_mean_min="0.1", nu_mean_max="0.05"),
        r"drift.nu_mean_min = 0.1 must be <= drift.nu_mean_max = 0.05",
    ),
    "drift-negative-clip": (lambda t: _with_drift(t, nu_std_min="-0.01"), r"drift.nu_std_min = -0.01"),
    "drift-reference-wrong-unit": (
        lambda t: _with_drift(t, nu_g_ref_siemens="2.5", nu_mean_log_slope="-0.01"),
        r"drift.nu_g_ref_siemens = 2.5 S is outside",
    ),
    "drift-slope-absurd": (lambda t: _with_drift(t, nu_std_log_slope="12.0"), r"drift.nu_std_log_slope = 12"),
    "drift-unknown-key": (lambda t: _with_drift(t, nu_slope="0.01"), r"unknown key 'nu_slope' in \[drift\]"),
    "string-value": (lambda t: t.replace("g_max_siemens = 1.0e-5", 'g_max_siemens = "1e-5"'), r"must be a number"),
    "bad-toml": (lambda t: t + "\n[[[", r"not valid TOML"),
    "schema-version": (lambda t: t.replace("schema_version = 1", "schema_version = 99"), r"schema_version = 99"),
    "no-source": (lambda t: t.split("[source]")[0], r"missing table \[source\]"),
    "unknown-table": (lambda t: t + "\n[magic]\nx = 1\n", r"unknown key 'magic' at top level"),
}


def _with_drift(text: str, **keys: str) -> str:
    """The ideal profile with a [drift] table of the given keys, each cited."""
    table = "[drift]\n" + "".join(f"{k} = {v}\n" for k, v in keys.items())
    cited = "".join(f', "drift.{k}" = "convention"' for k in keys)
    return text.replace("[source]", table + "[source]").replace(
        '"conductance.g_min_siemens" = "convention"', '"conductance.g_min_siemens" = "convention"' + cited
    )


@pytest.mark.parametrize("name", list(MALFORMED))
def test_malformed_profiles_are_rejected_naming_file_field_and_value(name: str, tmp_path: Path) -> None:
    mutate, pattern = MALFORMED[name]
    path = tmp_path / f"{name}.toml"
    path.write_text(mutate(_ideal_text()))
    with pytest.raises(ProfileError) as info:
        load_profile(path)
    message = str(info.value)
    assert "\n" not in message, "errors are one line"
    assert message.startswith(str(path)), message
    assert re.search(pattern, message), message


def test_missing_file_and_unknown_name_are_clear() -> None:
    with pytest.raises(ProfileError, match="no such profile file"):
        load_profile("/nonexistent/dir/p.toml")
    with pytest.raises(ProfileError, match="no shipped profile of that name"):
        load_profile("unobtainium")


# ------------------------------------------------------------------ conductance-dependent drift exponent


def _published_pcm_drift_law(g_siemens: np.ndarray, g_max_siemens: float) -> tuple[np.ndarray, np.ndarray]:
    """Nandakumar et al. 2019 as written in the IBM kit: clipped logs of G_T / g_max (G_T floored at 1e-7)."""
    g_t = np.maximum(np.abs(g_siemens) / g_max_siemens, 1e-7)
    mean = np.clip(-0.0155 * np.log(g_t) + 0.0244, 0.049, 0.1)
    std = np.clip(-0.0125 * np.log(g_t) - 0.0059, 0.008, 0.045)
    return mean, std


def test_pcm_drift_exponent_law_is_the_published_one() -> None:
    """The shipped PCM profile's reparametrized law reproduces the published formula at every conductance."""
    pcm = load_profile("pcm")
    g_max = pcm.conductance.g_max_siemens
    g = np.concatenate([[0.0, 1e-12], np.geomspace(1e-4, 1.0, 200) * g_max])
    mean, std = drift_exponent_distribution(g, pcm)
    ref_mean, ref_std = _published_pcm_drift_law(g, g_max)
    np.testing.assert_allclose(mean, ref_mean, rtol=0, atol=1e-8)
    np.testing.assert_allclose(std, ref_std, rtol=0, atol=1e-8)
    assert mean[0] == 0.1 and std[0] == 0.045, "a device at G = 0 sits at the fast-drift caps"
    assert np.all(np.diff(mean) <= 0) and np.all(np.diff(std) <= 0), "low-conductance states drift faster"


@pytest.mark.parametrize("name", [n for n in list_profiles() if not load_profile(n).drift.conductance_dependent])
def test_drift_law_is_constant_without_slopes(name: str) -> None:
    p = load_profile(name)
    g = np.linspace(0.0, p.conductance.g_max_siemens, 7)
    mean, std = drift_exponent_distribution(g, p)
    assert np.all(mean == p.drift.nu_mean) and np.all(std == p.drift.nu_std)


def test_slopes_of_zero_restore_the_constant_law() -> None:
    pcm = load_profile("pcm")
    flat = dataclasses.replace(pcm, drift=dataclasses.replace(pcm.drift, nu_mean_log_slope=0.0, nu_std_log_slope=0.0))
    mean, std = drift_exponent_distribution(np.geomspace(1e-9, 25e-6, 5), flat)
    assert np.all(mean == pcm.drift.nu_mean) and np.all(std == pcm.drift.nu_std)


def test_programmed_drift_exponents_follow_the_conductance_dependent_law() -> None:
    """Per target level, the drawn exponents are N(mu_nu(G_T), sigma_nu(G_T)) rectified at 0."""
    pcm = load_profile("pcm")
    levels = np.array([0.0, 0.02, 0.1, 0.3, 1.0]) * pcm.conductance.g_max_siemens
    n = 40_000
    g_t = np.repeat(levels, n).reshape(1, levels.size, n)
    nu = program_devices(g_t, pcm, Stages.only("drift"), np.random.default_rng(7)).nu[0]
    mu, sigma = _published_pcm_drift_law(levels, pcm.conductance.g_max_siemens)
    a = mu / sigma  # max(0, X), X ~ N(mu, sigma): E = mu Phi(a) + sigma phi(a); E[.^2] = (mu^2 + sigma^2) Phi(a) + mu sigma phi(a)
    expected_mean = mu * norm.cdf(a) + sigma * norm.pdf(a)
    expected_std = np.sqrt((mu**2 + sigma**2) * norm.cdf(a) + mu * sigma * norm.pdf(a) - expected_mean**2)
    for k in range(levels.size):
        assert abs(nu[k].mean() - expected_mean[k]) < 5 * expected_std[k] / math.sqrt(n), k
        assert nu[k].std() == pytest.approx(expected_std[k], rel=0.03), k


def test_shipped_profiles_are_found_in_a_checkout_without_install(monkeypatch):
    import crossbar.profiles as profiles_module

    installed = profiles_module.list_profiles()

    def not_installed(package):
        raise ModuleNotFoundError(f"No module named {package!r}")

    monkeypatch.setattr(profiles_module.resources, "files", not_installed)
    assert profiles_module.list_profiles() == installed
    assert profiles_module.load_profile("pcm").name == "pcm"
