"""The bench summaries: the soak's last line, the sustainable rate as found, the worst run
quoted, and the ratios."""

from __future__ import annotations

from typing import Any

from streams.bench.compare import ratios
from streams.bench.summary import SOAK_LINE, bench_lines, soak_line


def run(p50: float, p99: float, cpu: float | None = 1.0) -> dict[str, Any]:
    return {
        "sent": 100,
        "received": 100,
        "throughput": 99.0,
        "latency_ms": {"p50": p50, "p99": p99},
        "latency_growth_ms": 1.0,
        "cpu_ms_per_request": cpu,
        "broker_cpu_ms_per_request": None,
        "generator_kept_schedule": True,
    }


def section(rate: float, limited_by: str, runs: list[dict[str, Any]]) -> dict[str, Any]:
    worst = max(range(len(runs)), key=lambda i: runs[i]["latency_ms"]["p99"])
    return {
        "sustainable_rate": rate,
        "bracket": [rate, rate * 1.04 if limited_by == "system" else None],
        "converged": limited_by == "system",
        "limited_by": limited_by,
        "bisection": [run(1, 1)] * 3,
        "latency_rate": 100.0,
        "runs": runs,
        "worst_run": worst,
    }


def soak_results(growth: float | None, entries: float | None) -> dict[str, Any]:
    return {
        "load": {"sent": 300, "received": 300},
        "samples": [
            {"rss_mb": 120.04, "table_entries": None},
            {"rss_mb": None, "table_entries": None},
            {"rss_mb": 131.26, "table_entries": entries},
        ],
        "rss_growth_mb_per_10k": growth,
        "restart": {"seconds": 9.84, "status": "passed", "answered": True},
    }


def test_the_soak_line_reads_as_documented() -> None:
    line = soak_line(soak_results(-0.5, 42.0))
    assert line == (
        "soak: 300 requests, rss start 120.0 MB, end 131.3 MB, growth -0.50 MB per 10k, "
        "table entries 42, restart to first answer 9.8 s"
    )
    found = SOAK_LINE.fullmatch(line)
    assert found is not None
    assert found["entries"] == "42"


def test_what_was_not_measured_reads_n_a() -> None:
    line = soak_line(soak_results(None, None))
    found = SOAK_LINE.fullmatch(line)
    assert found is not None
    assert (found["growth"], found["entries"]) == ("n/a", "n/a")


def test_the_ratios_quote_the_worst_runs() -> None:
    pipeline = section(300, "system", [run(10, 40, 4.0), run(12, 90, 6.0)])
    baseline = section(3000, "cap", [run(2, 10), run(3, 30), run(2, 20)])
    got = ratios(pipeline, baseline)
    assert got["throughput"] == 0.1
    assert got["throughput_limited_by"] == {"pipeline": "system", "baseline": "cap"}
    assert got["p99_latency_worst_run"] == 3.0
    assert got["p50_latency_worst_run"] == 4.0
    assert got["cpu_per_request"] == 5.0


def test_the_summary_says_how_each_rate_was_found() -> None:
    results = {
        "baseline": section(3000, "cap", [run(2, 10), run(3, 30)]),
        "pipeline": section(300, "system", [run(10, 40), run(12, 90)]),
        "pipeline_model_latency": section(50, "system", [run(210, 300)])
        | {"model_latency_ms": 200},
        "ratios": {},
        "micro_us": {"codec": 1.0},
    }
    text = "\n".join(bench_lines(results))
    assert "baseline  sustainable >= 3000 req/s (sweep stopped by the cap)" in text
    assert "pipeline  sustainable 300 req/s (failed at 312; 3 bisection probes)" in text
    assert "worst of 2 at 100 req/s: 100/100 answered, 99.0/s, p50 12.0 ms, p99 90.0 ms" in text
