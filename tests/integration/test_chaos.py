"""``guardian chaos`` as an operator runs it: two workers, about 300 requests, two worker
kills; nothing lost, no conflicting responses, no round gaps, few extra model calls and
no worker exiting by itself."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass

import pytest

from tests.integration.harness import ROOT

pytestmark = pytest.mark.integration

EXTRA_CALLS_BOUND = 15
"""At most a few tasks are with the model when a worker is killed: each may cost a call."""


@dataclass(frozen=True)
class ChaosRun:
    stdout: str
    returncode: int
    requests: int
    lost: int
    conflicting: int
    duplicates: int
    extra_calls: int
    gaps: int


@pytest.fixture(scope="module")
def chaos(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> ChaosRun:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GUARDIAN_")}
    env["KAFKA_BOOTSTRAP_SERVERS"] = kafka_bootstrap
    out = tmp_path_factory.mktemp("chaos")
    cmd = [sys.executable, "-m", "streams.cli", "chaos", "--requests", "300", "--rate", "8"]
    cmd += ["--worker-kills", "2", "--quiet-start", "6", "--kill-every", "6", "8"]
    cmd += ["--drain", "120", "--out", str(out)]
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=400)
    lines = done.stdout.strip().splitlines()
    assert lines, done.stderr[-3000:]
    last = re.fullmatch(
        r"chaos: (\d+) requests, lost (\d+), conflicting (\d+), duplicate responses (\d+), "
        r"extra model calls (\d+), round gaps (\d+)",
        lines[-1],
    )
    assert last is not None, done.stdout[-3000:] + done.stderr[-3000:]
    return ChaosRun(done.stdout, done.returncode, *map(int, last.groups()))


@pytest.mark.timeout(420)
def test_a_short_chaos_run_keeps_the_invariants(chaos: ChaosRun) -> None:
    assert chaos.requests == 300
    assert (chaos.conflicting, chaos.gaps) == (0, 0), chaos.stdout[-3000:]
    assert chaos.extra_calls <= EXTRA_CALLS_BOUND, chaos.stdout[-3000:]
    assert chaos.stdout.count("SIGKILL worker") == 2
    assert "workers that exited by themselves: 0" in chaos.stdout
    assert chaos.returncode == (1 if chaos.lost else 0), "the command exits non-zero on a loss"


def test_a_short_chaos_run_loses_nothing(chaos: ChaosRun) -> None:
    assert chaos.lost == 0, chaos.stdout[-3000:]
