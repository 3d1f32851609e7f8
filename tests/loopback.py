"""Loopback helpers for tests: a free port, and a real aiohttp server on 127.0.0.1."""

from __future__ import annotations

import socket
from types import TracebackType
from typing import Self

from aiohttp import web


def free_port() -> int:
    """A loopback port nothing listens on (released before it is returned)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class LoopbackServer:
    """Serves ``app`` on a free loopback port for the length of an ``async with``."""

    def __init__(self, app: web.Application) -> None:
        self._runner = web.AppRunner(app, shutdown_timeout=1.0)
        self.origin = ""
        """``http://127.0.0.1:<port>`` once started."""

    async def start(self) -> str:
        """Start serving; returns the origin."""
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        host, port = self._runner.addresses[0][:2]
        self.origin = f"http://{host}:{port}"
        return self.origin

    async def stop(self) -> None:
        await self._runner.cleanup()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()
