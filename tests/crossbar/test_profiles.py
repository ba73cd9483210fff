"""Device profiles: every shipped profile loads; malformed ones are rejected with one clear line."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from crossbar import DeviceProfile, ProfileError, list_profiles, load_profile

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
    "string-value": (lambda t: t.replace("g_max_siemens = 1.0e-5", 'g_max_siemens = "1e-5"'), r"must be a number"),
    "bad-toml": (lambda t: t + "\n[[[", r"not valid TOML"),
    "schema-version": (lambda t: t.replace("schema_version = 1", "schema_version = 99"), r"schema_version = 99"),
    "no-source": (lambda t: t.split("[source]")[0], r"missing table \[source\]"),
    "unknown-table": (lambda t: t + "\n[magic]\nx = 1\n", r"unknown key 'magic' at top level"),
}


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
