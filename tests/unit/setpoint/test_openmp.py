"""``import setpoint`` sets how torch's OpenMP threads wait, before torch loads; the environment wins."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

SHOW = (
    "import os, sys, setpoint; "
    "print(os.environ.get('OMP_WAIT_POLICY'), os.environ.get('GOMP_SPINCOUNT'), 'torch' in sys.modules)"
)


def imported_with(**env: str) -> list[str]:
    clean = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    done = subprocess.run(
        [sys.executable, "-c", SHOW],
        env={**clean, **env},
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout.split()


def test_passive_after_a_short_spin_is_the_default() -> None:
    assert imported_with() == ["PASSIVE", "20000", "False"]  # set before torch is imported


@pytest.mark.parametrize(
    ("env", "seen"),
    [
        ({"OMP_WAIT_POLICY": "ACTIVE"}, ["ACTIVE", "None"]),  # no spin count under a policy it set
        ({"OMP_WAIT_POLICY": "PASSIVE"}, ["PASSIVE", "None"]),  # passive means passive
        ({"GOMP_SPINCOUNT": "5000"}, ["PASSIVE", "5000"]),
    ],
)
def test_the_environment_wins(env: dict[str, str], seen: list[str]) -> None:
    assert imported_with(**env)[:2] == seen
