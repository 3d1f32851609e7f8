"""A tiny run of ``guardian bench``: the harness measures both systems and writes its JSON."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration.harness import ROOT

pytestmark = pytest.mark.integration


@pytest.mark.timeout(600)
def test_bench_smoke_run_writes_results(kafka_bootstrap: str, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GUARDIAN_")}
    env["KAFKA_BOOTSTRAP_SERVERS"] = kafka_bootstrap
    done = subprocess.run(
        [sys.executable, "-m", "streams.cli", "bench", "--smoke", "--out", str(tmp_path)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=540,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    (path,) = tmp_path.glob("results-*.json")
    results = json.loads(path.read_text())
    for system in ("baseline", "pipeline", "pipeline_model_latency"):
        for run in results[system]["runs"]:
            assert run["received"] == run["sent"] > 0
            assert run["latency_ms"]["p50"] > 0
    assert results["pipeline"]["sustainable_rate"] > 0
    assert results["pipeline_model_latency"]["runs"][0]["latency_ms"]["p50"] >= 200
    assert results["micro_us"]["codec_round_trip_request"] > 0
