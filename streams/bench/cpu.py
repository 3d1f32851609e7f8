"""CPU time of a process from /proc (user + system seconds), children excluded."""

from __future__ import annotations

import os
from pathlib import Path

_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float | None:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return None
    return (int(fields[11]) + int(fields[12])) / _TICKS


class CpuMeter:
    """Differences of CPU seconds per named process between ``start`` and ``stop``."""

    def __init__(self, pids: dict[str, int]) -> None:
        self._pids = pids
        self._start: dict[str, float] = {}

    def start(self) -> None:
        self._start = {n: s for n, p in self._pids.items() if (s := cpu_seconds(p)) is not None}

    def stop(self) -> dict[str, float]:
        used = {}
        for name, pid in self._pids.items():
            now = cpu_seconds(pid)
            if now is not None and name in self._start:
                used[name] = round(now - self._start[name], 2)
        return used
