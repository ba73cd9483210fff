"""The thread-pool environment ``import crossbar`` sets before NumPy and torch load (crossbar/_threadenv.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

SCRIPT = (
    "import json, os, sys\n"
    "{pre}\n"
    "import crossbar\n"
    "print(json.dumps({{'env': {{k: os.environ.get(k) for k in ('OPENBLAS_THREAD_TIMEOUT', 'OMP_WAIT_POLICY')}},"
    " 'applied': crossbar._threadenv.APPLIED}}))\n"
)


def _run(pre: str = "", **env: str) -> dict:
    clean = {k: v for k, v in os.environ.items()
             if k not in ("OPENBLAS_THREAD_TIMEOUT", "OMP_WAIT_POLICY", "CROSSBAR_KEEP_THREAD_ENV")}
    clean.update(env)
    out = subprocess.run([sys.executable, "-c", SCRIPT.format(pre=pre)], env=clean, capture_output=True,
                         text=True, check=True, timeout=300)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_import_crossbar_first_sets_both_pools_to_sleep():
    got = _run()
    assert got["env"] == {"OPENBLAS_THREAD_TIMEOUT": "4", "OMP_WAIT_POLICY": "PASSIVE"}
    assert got["applied"] == got["env"]


def test_a_value_the_user_set_wins():
    got = _run(OMP_WAIT_POLICY="ACTIVE")
    assert got["env"] == {"OPENBLAS_THREAD_TIMEOUT": "4", "OMP_WAIT_POLICY": "ACTIVE"}
    assert got["applied"] == {"OPENBLAS_THREAD_TIMEOUT": "4"}


def test_nothing_is_set_for_a_library_already_loaded():
    got = _run(pre="import numpy")
    assert got["env"]["OPENBLAS_THREAD_TIMEOUT"] is None  # too late for OpenBLAS: not pretended
    assert got["applied"] == {"OMP_WAIT_POLICY": "PASSIVE"}


@pytest.mark.parametrize("flag", ["1", "yes"])
def test_opt_out_leaves_the_environment_alone(flag):
    got = _run(CROSSBAR_KEEP_THREAD_ENV=flag)
    assert got["env"] == {"OPENBLAS_THREAD_TIMEOUT": None, "OMP_WAIT_POLICY": None}
    assert got["applied"] == {}
