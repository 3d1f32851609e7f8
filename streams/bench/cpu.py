"""CPU time of a process from /proc (user + system seconds), children excluded; the
process listening on a local port; waiting until processes are idle."""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from pathlib import Path

_TICKS = os.sysconf("SC_CLK_TCK")
_LISTEN = "0A"


def cpu_seconds(pid: int) -> float | None:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return None
    return (int(fields[11]) + int(fields[12])) / _TICKS


def machine_busy_seconds() -> float:
    """CPU seconds every process on the machine has used since boot (all cores; idle and
    I/O wait left out), from /proc/stat."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return (sum(fields[:8]) - fields[3] - fields[4]) / _TICKS


class CpuMeter:
    """Differences of CPU seconds per named process between ``start`` and ``stop``."""

    def __init__(self, pids: dict[str, int]) -> None:
        self._pids = pids
        self._start: dict[str, float] = {}
        self._machine = (0.0, 0.0)

    def start(self) -> None:
        self._start = {n: s for n, p in self._pids.items() if (s := cpu_seconds(p)) is not None}
        self._machine = (machine_busy_seconds(), time.monotonic())

    def others(self, used: dict[str, float]) -> float:
        """Cores the rest of the machine used since ``start`` (every process but the
        metered ones): on a shared machine, what the step's numbers were measured beside."""
        busy, started = self._machine
        wall = time.monotonic() - started
        if wall <= 0:
            return 0.0
        return round(max(0.0, machine_busy_seconds() - busy - sum(used.values())) / wall, 3)

    def stop(self) -> dict[str, float]:
        used = {}
        for name, pid in self._pids.items():
            now = cpu_seconds(pid)
            if now is not None and name in self._start:
                used[name] = round(now - self._start[name], 2)
        return used


def listener_pid(port: int) -> int | None:
    """The process listening on TCP ``port`` (any address), if this user may see it."""
    inodes = _listening_inodes(port)
    if not inodes:
        return None
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit() and _holds_socket(proc, inodes):
            return int(proc.name)
    return None


def _listening_inodes(port: int) -> set[str]:
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(FileNotFoundError):
            for line in Path(table).read_text().splitlines()[1:]:
                fields = line.split()
                if fields[3] == _LISTEN and int(fields[1].rsplit(":", 1)[1], 16) == port:
                    inodes.add(fields[9])
    return inodes


def _holds_socket(proc: Path, inodes: set[str]) -> bool:
    wanted = {f"socket:[{inode}]" for inode in inodes}
    try:
        return any(os.readlink(fd) in wanted for fd in (proc / "fd").iterdir())
    except (FileNotFoundError, PermissionError, ProcessLookupError):
        return False


async def settle(
    pids: list[int], *, idle_cores: float = 0.15, window_s: float = 0.5, timeout_s: float = 30.0
) -> float:
    """Wait until ``pids`` together use under ``idle_cores`` over a window (the backlog of
    a previous step is done); return the seconds waited (``timeout_s`` at most)."""
    started = time.monotonic()
    while time.monotonic() - started < timeout_s:
        before = sum(s for p in pids if (s := cpu_seconds(p)) is not None)
        await asyncio.sleep(window_s)  # the measuring window itself
        after = sum(s for p in pids if (s := cpu_seconds(p)) is not None)
        if after - before < idle_cores * window_s:
            break
    return round(time.monotonic() - started, 2)
