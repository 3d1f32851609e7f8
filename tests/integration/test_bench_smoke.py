"""Tiny runs of ``guardian bench``: the harness measures what it should and writes its JSON."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka.admin import AdminClient

from connectors.kafka import KafkaSettings
from streams.bench.summary import SOAK_LINE
from tests.integration.harness import ROOT

pytestmark = pytest.mark.integration


def run_bench(
    kafka_bootstrap: str, out: Path, *args: str, pattern: str, timeout_s: float = 240
) -> dict[str, Any]:
    results, _ = run_bench_output(kafka_bootstrap, out, *args, pattern=pattern, timeout_s=timeout_s)
    return results


def run_bench_output(
    kafka_bootstrap: str, out: Path, *args: str, pattern: str, timeout_s: float = 240
) -> tuple[dict[str, Any], str]:
    """The results file and what the command printed."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GUARDIAN_")}
    env["KAFKA_BOOTSTRAP_SERVERS"] = kafka_bootstrap
    done = subprocess.run(
        [sys.executable, "-m", "streams.cli", "bench", *args, "--out", str(out)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    (path,) = out.glob(pattern)
    results: dict[str, Any] = json.loads(path.read_text())
    return results, done.stdout


def left_behind(kafka_bootstrap: str, namespace: str) -> list[str]:
    """Topics and consumer groups still named ``<namespace>.…``."""
    admin = AdminClient(KafkaSettings(bootstrap_servers=kafka_bootstrap).confluent())
    groups = admin.list_consumer_groups().result(timeout=30).valid
    names = [*admin.list_topics(timeout=30).topics, *(g.group_id for g in groups)]
    return [n for n in names if n.startswith(f"{namespace}.")]


@pytest.mark.timeout(240)
def test_bench_smoke_run_writes_results(kafka_bootstrap: str, tmp_path: Path) -> None:
    results = run_bench(kafka_bootstrap, tmp_path, "--smoke", pattern="results-*.json")
    for system in ("baseline", "pipeline", "pipeline_model_latency"):
        for run in results[system]["runs"]:
            assert run["received"] == run["sent"] > 0
            assert run["latency_ms"]["p50"] > 0
            assert run["cpu_ms_per_request"] > 0
    for system in ("baseline", "pipeline"):
        assert_rate_found(results[system], results["settings"]["tolerance"])
        assert results[system]["latency_rate"] == results["settings"]["latency_rate"]
        assert 0 <= results[system]["worst_run"] < len(results[system]["runs"])
    assert results["pipeline_model_latency"]["runs"][0]["latency_ms"]["p50"] >= 200
    assert results["ratios"]["throughput"] > 0
    assert results["micro_us"]["codec_round_trip_request"] > 0
    assert not left_behind(kafka_bootstrap, results["namespace"])


def assert_rate_found(section: dict[str, Any], tolerance: float) -> None:
    """The sweep ran until a failure (or its cap), and the bisection stayed in its bracket."""
    held, failed = section["bracket"]
    assert section["sustainable_rate"] == pytest.approx(held, abs=0.1)
    steps = section["sweep"] + section["bisection"]
    assert held == max([0.0] + [s["rate"] for s in steps if s["rate"] <= held])
    if section["limited_by"] == "system":
        assert failed > held
        assert section["sweep"][-1]["rate"] == max(s["rate"] for s in section["sweep"])
        assert section["converged"] == (failed <= held * (1 + tolerance))
        assert all(0 < p["rate"] < section["sweep"][-1]["rate"] for p in section["bisection"])
    else:
        assert failed is None
        assert held > 0
        assert not section["bisection"]


@pytest.mark.timeout(120)
def test_soak_smoke_run_restarts_and_reports(kafka_bootstrap: str, tmp_path: Path) -> None:
    results, printed = run_bench_output(
        kafka_bootstrap, tmp_path, "soak", "--smoke", pattern="soak-*.json"
    )
    last = SOAK_LINE.fullmatch(printed.strip().splitlines()[-1])
    assert last is not None, printed[-1000:]
    assert int(last["requests"]) == results["load"]["sent"] == results["load"]["received"] == 300
    assert 20 < float(last["start"]) < 4000
    assert 20 < float(last["end"]) < 4000
    assert last["growth"] == "n/a" or abs(float(last["growth"])) < 10_000
    assert 0 < float(last["restart"]) < 180, "the new worker answered a fresh request"
    assert results["restart"]["answered"]
    assert results["restart"]["status"] == "passed"
    samples = results["samples"]
    assert len(samples) >= 5
    assert samples[-1]["answered"] == 300
    assert all(s["rss_mb"] > 0 for s in samples)
    assert [s["t"] for s in samples] == sorted(s["t"] for s in samples)
    assert not left_behind(kafka_bootstrap, results["namespace"])


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


@pytest.mark.timeout(1200)
def test_bench_http_smoke_puts_both_proxies_before_the_same_model(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    # The first run installs LiteLLM's proxy into its own virtualenv (.run/litellm-venv).
    results = run_bench(
        kafka_bootstrap, tmp_path, "http", "--smoke", pattern="peers-*.json", timeout_s=1100
    )
    for system in ("litellm", "gateway"):
        section = results[system]
        first = section["fixed"][0]
        assert first["ok"] == first["sent"] > 0, section["fixed"]
        assert section["search"]["sustainable_rate"] > 0
        assert section["cpu"], "every step meters CPU"
    proxy = results["litellm"]["settings"]
    assert proxy["workers"] == 1
    assert proxy["config"]["litellm_settings"]["callbacks"] == []
    assert "sk-" not in " ".join(proxy["command"])
    assert results["kafka_chain"]["p50_ms"] > 0
    assert set(results["ratios"]) >= {"sustainable_rate_ratio", "gateway_minus_chain_p50_ms"}
    assert left_behind(kafka_bootstrap, results["namespace"]) == []


@pytest.mark.timeout(300)
def test_bench_scale_smoke_drains_the_backlog_with_each_configuration(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    results = run_bench(kafka_bootstrap, tmp_path, "scale", "--smoke", pattern="scale-*.json")
    runs = results["runs"]
    assert [(r["workers"], r["slots"]) for r in runs] == [(1, 4), (2, 4), (1, 8)]
    for run in runs:
        assert run["received"] == run["sent"] == 24, run
        assert 0 < run["throughput"] <= run["capacity"] * 1.1, run
    assert runs[0]["speedup"] == 1.0
