"""The on-screen summaries of ``guardian bench`` and ``guardian bench soak``, as lines."""

from __future__ import annotations

import re
from typing import Any

from streams.bench.compare import worst
from streams.bench.sweep import brief

SOAK_LINE = re.compile(
    r"soak: (?P<requests>\d+) requests, rss start (?P<start>[\d.]+) MB, "
    r"end (?P<end>[\d.]+) MB, growth (?P<growth>-?[\d.]+|n/a) MB per 10k, "
    r"table entries (?P<entries>\d+|n/a), restart to first answer (?P<restart>[\d.]+|n/a) s"
)
"""The last line of a soak, as the tests and scripts read it."""


def bench_lines(results: dict[str, Any]) -> list[str]:
    lines = ["", "== summary"]
    for name in ("baseline", "pipeline"):
        section = results[name]
        above = section["latency_rate"] > section["sustainable_rate"]
        lines.append(
            f"{name:<9} sustainable {_sustainable(section)}; worst of "
            f"{len(section['runs'])} at {section['latency_rate']:.0f} req/s"
            f"{' (above its sustainable rate)' if above else ''}: {brief(worst(section))}"
        )
    slow = results["pipeline_model_latency"]
    lines.append(
        f"pipeline with {slow['model_latency_ms']:.0f} ms model, worst of {len(slow['runs'])}"
        f" at {slow['latency_rate']:.0f} req/s: {brief(worst(slow))}"
    )
    lines.append(f"ratios (pipeline / baseline): {results['ratios']}")
    micro = results["micro_us"]
    lines.append("micro (us/call): " + ", ".join(f"{k} {v}" for k, v in micro.items()))
    return lines


def _sustainable(section: dict[str, Any]) -> str:
    held, failed = section["bracket"]
    if section["limited_by"] != "system":
        return f">= {held:.0f} req/s (sweep stopped by the {section['limited_by']})"
    exact = "" if section["converged"] else ", not converged"
    return (
        f"{held:.0f} req/s (failed at {failed:.0f}; "
        f"{len(section['bisection'])} bisection probes{exact})"
    )


def soak_line(results: dict[str, Any]) -> str:
    samples = [s for s in results["samples"] if s["rss_mb"] is not None]
    start, end = (samples[0]["rss_mb"], samples[-1]["rss_mb"]) if samples else (0.0, 0.0)
    growth = results["rss_growth_mb_per_10k"]
    entries = results["samples"][-1]["table_entries"]
    restart = results["restart"]["seconds"]
    return (
        f"soak: {results['load']['sent']} requests, rss start {start:.1f} MB, end {end:.1f} MB, "
        f"growth {_or_na(growth, '.2f')} MB per 10k, table entries {_or_na(entries, '.0f')}, "
        f"restart to first answer {_or_na(restart, '.1f')} s"
    )


def soak_lines(results: dict[str, Any]) -> list[str]:
    load = results["load"]
    lat = load["latency_ms"]
    return [
        "",
        f"== soak at {results['plan']['rate']:.0f} req/s: {load['received']}/{load['sent']}"
        f" answered, p50 {lat['p50']:.1f} ms, p99 {lat['p99']:.1f} ms, max {lat['max']:.1f} ms",
        f"restarted worker answered: {results['restart']['status'] or 'no answer'}",
        soak_line(results),
    ]


def _or_na(value: float | None, spec: str) -> str:
    return "n/a" if value is None else format(value, spec)


def peers_lines(results: dict[str, Any]) -> list[str]:
    """``guardian bench http``: each system's fixed rates, sustainable rate and half-rate
    latency, then the ratios."""
    lines = ["", "== summary"]
    for name, label in (("litellm", "LiteLLM proxy"), ("gateway", "gateway + pipeline")):
        section = results[name]
        search = section["search"]
        fixed = ", ".join(
            f"{s['rate']:g}/s p50 {s['latency_ms'].get('p50', float('nan')):.1f} ms"
            for s in section["fixed"]
        )
        lines.append(f"{label}: fixed {fixed}")
        held, failed = search["bracket"]
        half = section["at_half"]
        lines.append(
            f"  sustainable {held:.1f} req/s (failed at {_or_na(failed, '.1f')}, limited by "
            f"{search['limited_by']}); at {section['half_rate']:g} req/s "
            + (
                f"p50 {half['latency_ms']['p50']:.1f} ms, p99 {half['latency_ms']['p99']:.1f} ms"
                if half
                else "not measured"
            )
        )
    chain = results["kafka_chain"]
    lines.append(
        f"raw Kafka chain ({chain['hops']} hops): p50 {chain['p50_ms']:.1f} ms, "
        f"p99 {chain['p99_ms']:.1f} ms"
    )
    lines.append(f"ratios: {results['ratios']}")
    return lines
