"""Tiny runs of ``guardian bench``: the harness measures what it should and writes its JSON."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.integration.harness import ROOT

pytestmark = pytest.mark.integration


def run_bench(kafka_bootstrap: str, out: Path, *args: str, pattern: str) -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GUARDIAN_")}
    env["KAFKA_BOOTSTRAP_SERVERS"] = kafka_bootstrap
    done = subprocess.run(
        [sys.executable, "-m", "streams.cli", "bench", *args, "--out", str(out)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=540,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    (path,) = out.glob(pattern)
    results: dict[str, Any] = json.loads(path.read_text())
    return results


@pytest.mark.timeout(600)
def test_bench_smoke_run_writes_results(kafka_bootstrap: str, tmp_path: Path) -> None:
    results = run_bench(kafka_bootstrap, tmp_path, "--smoke", pattern="results-*.json")
    for system in ("baseline", "pipeline", "pipeline_model_latency"):
        for run in results[system]["runs"]:
            assert run["received"] == run["sent"] > 0
            assert run["latency_ms"]["p50"] > 0
    assert results["pipeline"]["sustainable_rate"] > 0
    assert results["pipeline_model_latency"]["runs"][0]["latency_ms"]["p50"] >= 200
    assert results["micro_us"]["codec_round_trip_request"] > 0


@pytest.mark.timeout(300)
def test_priority_bench_smoke_reports_every_lane(kafka_bootstrap: str, tmp_path: Path) -> None:
    results = run_bench(kafka_bootstrap, tmp_path, "priority", "--smoke", pattern="priority-*.json")
    assert list(results["runs"]) == ["3_lanes"], "the smoke skips the single-lane reference"
    run = results["runs"]["3_lanes"]
    assert run["received"] == run["sent"] > 0
    assert list(run["by_lane"]) == ["high", "normal", "low"]
    assert sum(lane["requests"] for lane in run["by_lane"].values()) == run["sent"]
    for lane in run["by_lane"].values():
        assert lane["p95"] >= lane["p50"] >= results["plan"]["model_latency_ms"]
