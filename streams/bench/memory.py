"""What a soak samples: a process's resident memory, a gauge from a worker's Prometheus
endpoint, and the growth of memory per request after a warm-up (least squares)."""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from pathlib import Path

import httpx


def rss_mb(pid: int) -> float | None:
    """Resident set size (VmRSS) of ``pid`` in MB, or None once it is gone."""
    try:
        lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    except (FileNotFoundError, ProcessLookupError):
        return None
    for line in lines:
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024  # the kernel reports kB
    return None


def metric_value(exposition: str, name: str) -> float | None:
    """The sum of ``name``'s samples (every label set) in Prometheus text, or None when
    the metric is absent."""
    values = []
    for line in exposition.splitlines():
        if line.startswith("#"):
            continue
        head, _, value = line.rpartition(" ")
        if head == name or head.startswith(name + "{"):
            with contextlib.suppress(ValueError):
                values.append(float(value))
    return sum(values) if values else None


async def scrape(port: int, name: str, timeout_s: float = 2.0) -> float | None:
    """``name`` from the endpoint on 127.0.0.1:``port``; None if absent or unreachable."""
    try:
        async with httpx.AsyncClient(timeout=timeout_s) as client:
            reply = await client.get(f"http://127.0.0.1:{port}/metrics")
    except httpx.HTTPError:
        return None
    return metric_value(reply.text, name) if reply.status_code == 200 else None


def slope(xs: Sequence[float], ys: Sequence[float]) -> float | None:
    """The least-squares slope of ``ys`` over ``xs``; None with fewer than two distinct xs."""
    if len(xs) != len(ys):
        raise ValueError("xs and ys differ in length")
    n = len(xs)
    if n < 2:
        return None
    mean_x, mean_y = sum(xs) / n, sum(ys) / n
    spread = sum((x - mean_x) ** 2 for x in xs)
    if spread == 0:
        return None
    return sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys, strict=True)) / spread


def growth_per_10k(answered: Sequence[int], rss: Sequence[float], *, warm_up: int) -> float | None:
    """MB of resident memory per 10,000 answered requests, fitted over the samples taken
    once ``warm_up`` requests were answered."""
    kept = [(a, r) for a, r in zip(answered, rss, strict=True) if a >= warm_up]
    per_request = slope([a for a, _ in kept], [r for _, r in kept])
    return None if per_request is None else per_request * 10_000
