"""``guardian chaos`` as an operator runs it: two workers, about 300 requests, two worker
kills; nothing lost, no conflicting responses, no round gaps, few extra model calls."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration.harness import ROOT

pytestmark = pytest.mark.integration
EXTRA_CALLS_BOUND = 15
"""At most a few tasks are with the model when a worker is killed: each may cost a call."""


@pytest.mark.timeout(420)
def test_a_short_chaos_run_loses_nothing(kafka_bootstrap: str, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GUARDIAN_")}
    env["KAFKA_BOOTSTRAP_SERVERS"] = kafka_bootstrap
    cmd = [sys.executable, "-m", "streams.cli", "chaos", "--requests", "300", "--rate", "8"]
    cmd += ["--worker-kills", "2", "--quiet-start", "6", "--kill-every", "6", "8"]
    cmd += ["--drain", "200", "--out", str(tmp_path / "chaos")]
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=400)
    lines = done.stdout.strip().splitlines()
    assert lines, done.stderr[-3000:]
    last = re.fullmatch(
        r"chaos: (\d+) requests, lost (\d+), conflicting (\d+), duplicate responses (\d+), "
        r"extra model calls (\d+), round gaps (\d+)",
        lines[-1],
    )
    assert last is not None, done.stdout[-3000:] + done.stderr[-3000:]
    requests, lost, conflicting, _, extra, gaps = map(int, last.groups())
    assert (requests, lost, conflicting, gaps) == (300, 0, 0, 0), done.stdout[-3000:]
    assert extra <= EXTRA_CALLS_BOUND, done.stdout[-3000:]
    assert done.stdout.count("SIGKILL worker") == 2
    assert "workers that exited by themselves: 0" in done.stdout
    assert done.returncode == 0
