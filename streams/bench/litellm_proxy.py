"""LiteLLM's proxy as the HTTP benchmark's reference gateway: installed into a virtualenv
of its own at pinned versions, configured with one model routed to a given
OpenAI-compatible endpoint, and run as one worker on loopback."""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp

from schemas.errors import GuardianError
from streams.bench.procs import spawn, stop

LITELLM_VERSION = "1.106.12"
PINS: tuple[str, ...] = (f"litellm[proxy]=={LITELLM_VERSION}",)
"""What pip installs into the proxy's own virtualenv; ``install`` records every resolved
version beside it. 1.107.0 is not on PyPI, and later releases ship the proxy as a
package of its own."""
MODEL_NAME = "bench-model"
"""The model name clients ask the proxy for."""
DEFAULT_VENV = Path(".run/litellm-venv")
STAMP = "guardian-install.json"
INSTALL_TIMEOUT_S = 1200.0
READY_TIMEOUT_S = 120.0
MASTER_KEY_ENV = "LITELLM_MASTER_KEY"
PROXY_ENV: dict[str, str] = {
    "LITELLM_MODE": "PRODUCTION",  # DEV mode would read a .env file from the working dir
    "LITELLM_LOG": "ERROR",
    # Bundled copies instead of fetches at start-up: the proxy runs offline, on loopback.
    "LITELLM_LOCAL_MODEL_COST_MAP": "True",
    "LITELLM_LOCAL_ANTHROPIC_BETA_HEADERS": "True",
    "LITELLM_LOCAL_AUTOROUTER_PRESETS": "True",
    "LITELLM_LOCAL_BLOG_POSTS": "True",
    "LITELLM_LOCAL_POLICY_TEMPLATES": "True",
    "DISABLE_ADMIN_UI": "True",
    "NO_PROXY": "127.0.0.1,localhost",
}
"""The proxy's environment on top of ours (the master key comes on top of this)."""

Progress = Callable[[str], None]
logger = logging.getLogger(__name__)


class LiteLLMError(GuardianError):
    """LiteLLM's proxy could not be installed or started; ``retriable`` when trying again
    can help (a registry or start-up hiccup), not when the pins or the config are wrong."""

    def __init__(self, message: str, *, retriable: bool = False) -> None:
        super().__init__(message)
        self.retriable = retriable


def install(venv: Path = DEFAULT_VENV, progress: Progress = logger.info) -> list[str]:
    """Install ``PINS`` into ``venv`` unless its stamp says they are there; the installed
    distributions as ``name==version``. Never touches the interpreter running this."""
    stamp = venv / STAMP
    if stamp.exists():
        recorded = json.loads(stamp.read_text())
        if recorded.get("pins") == list(PINS):
            return list(recorded["installed"])
    started = time.monotonic()
    progress(f"litellm: creating {venv}")
    _run([sys.executable, "-m", "venv", "--clear", str(venv)], venv.parent / "litellm-venv.log")
    progress(f"litellm: installing {' '.join(PINS)} (a few minutes)")
    pip = [str(venv / "bin" / "python"), "-m", "pip", "--disable-pip-version-check"]
    _run([*pip, "install", *PINS], venv / "install.log")
    installed = _run([*pip, "freeze", "--all"], venv / "freeze.log").split()
    seconds = round(time.monotonic() - started, 1)
    stamp.write_text(json.dumps({"pins": list(PINS), "installed": installed, "seconds": seconds}))
    progress(f"litellm: installed in {seconds} s")
    return installed


def _run(cmd: list[str], log: Path) -> str:
    log.parent.mkdir(parents=True, exist_ok=True)
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=INSTALL_TIMEOUT_S)
    except subprocess.TimeoutExpired as exc:
        message = f"{' '.join(cmd)} timed out after {exc.timeout} s"
        raise LiteLLMError(message, retriable=True) from exc
    log.write_text(done.stdout + done.stderr)
    if done.returncode != 0:
        tail = (done.stdout + done.stderr)[-3000:]
        raise LiteLLMError(f"{' '.join(cmd)} failed ({done.returncode}), see {log}:\n{tail}")
    return done.stdout


def proxy_config(model_base_url: str, upstream_model: str) -> dict[str, Any]:
    """One model, no database, cache, callbacks or retries: the proxy's bare routing path.
    The master key is read from the environment, so the config holds no secret."""
    return {
        "model_list": [
            {
                "model_name": MODEL_NAME,
                "litellm_params": {
                    "model": f"openai/{upstream_model}",
                    "api_base": model_base_url,
                    "api_key": "sk-bench-upstream-dummy",
                },
            }
        ],
        "litellm_settings": {
            "cache": False,
            "callbacks": [],
            "success_callback": [],
            "failure_callback": [],
            "num_retries": 0,
            "request_timeout": 60,
        },
        "router_settings": {"num_retries": 0},
        "general_settings": {
            "master_key": f"os.environ/{MASTER_KEY_ENV}",
            "disable_spend_logs": True,
            "disable_error_logs": True,
        },
    }


def _check_free(port: int) -> None:
    """Fail at once on a taken port: the proxy would exit, and readiness polls would reach
    whatever holds the port instead."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        # As the proxy's server binds: connections of an earlier run in TIME_WAIT are no
        # obstacle, a listener is.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError as exc:
            raise LiteLLMError(f"port {port} on 127.0.0.1 is taken: {exc}") from exc


def new_master_key() -> str:
    """A fresh random key, ``sk-`` and 64 hex digits: the proxy refuses an empty or a
    publicly known key, and its virtual keys start with ``sk-``."""
    return f"sk-{secrets.token_hex(32)}"


class LiteLLMProxy:
    """``async with LiteLLMProxy(model_base_url, port, workdir) as proxy``: LiteLLM's proxy
    on ``proxy.base_url`` (``/v1`` included) with ``proxy.api_key``, routing ``MODEL_NAME``
    to ``model_base_url``; ready once a chat completion went through it."""

    def __init__(
        self,
        model_base_url: str,
        port: int,
        workdir: Path,
        *,
        upstream_model: str = "upstream-model",
        venv: Path = DEFAULT_VENV,
        progress: Progress = logger.info,
    ) -> None:
        self.model_base_url = model_base_url
        self.port = port
        # Absolute: the recorded command must say which files it ran, wherever it is read.
        self.workdir = workdir.resolve()
        self.venv = venv.resolve()
        self.api_key = new_master_key()
        self.base_url = f"http://127.0.0.1:{port}/v1"
        self.config = proxy_config(model_base_url, upstream_model)
        self._progress = progress
        self._installed: list[str] = []
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def command(self) -> list[str]:
        config = self.workdir / "litellm-config.yaml"
        return [
            str(self.venv / "bin" / "litellm"),
            *("--config", str(config), "--host", "127.0.0.1", "--port", str(self.port)),
            *("--num_workers", "1"),
        ]

    @property
    def pid(self) -> int | None:
        return None if self._proc is None else self._proc.pid

    def settings(self) -> dict[str, Any]:
        """What a result file records of this proxy: versions, command, config, environment
        (the master key is neither in the command nor in the config)."""
        return {
            "litellm_version": LITELLM_VERSION,
            "pins": list(PINS),
            "installed": self._installed,
            "command": self.command,
            "config": self.config,
            "env": PROXY_ENV,
            "workers": 1,
            "server": "uvicorn",  # the proxy's default
            "model_name": MODEL_NAME,
            "model_base_url": self.model_base_url,
        }

    async def __aenter__(self) -> LiteLLMProxy:
        await asyncio.to_thread(self._prepare)
        log = self.workdir / "litellm.log"
        self._progress(f"litellm: starting on {self.base_url}")
        env = PROXY_ENV | {MASTER_KEY_ENV: self.api_key}
        self._proc = spawn(self.command, log, env)
        try:
            await self._wait_ready(log)
        except BaseException:
            await self.__aexit__()
            raise
        return self

    def _prepare(self) -> None:
        _check_free(self.port)
        self._installed = install(self.venv, self._progress)
        self.workdir.mkdir(parents=True, exist_ok=True)
        # JSON is YAML: the config needs no YAML writer.
        (self.workdir / "litellm-config.yaml").write_text(json.dumps(self.config, indent=2))

    async def __aexit__(self, *_: object) -> None:
        proc, self._proc = self._proc, None
        if proc is not None:
            await asyncio.to_thread(stop, proc)

    async def _wait_ready(self, log: Path) -> None:
        started = time.monotonic()
        deadline = started + READY_TIMEOUT_S
        timeout = aiohttp.ClientTimeout(total=5)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            while (missing := await self._not_ready(session)) is not None:
                assert self._proc is not None
                exited = self._proc.poll() is not None
                if exited or time.monotonic() > deadline:
                    tail = (await asyncio.to_thread(log.read_text, errors="replace"))[-3000:]
                    state = "exited" if exited else f"not ready in {READY_TIMEOUT_S:.0f} s"
                    raise LiteLLMError(
                        f"LiteLLM proxy {state} ({missing}), see {log}:\n{tail}",
                        retriable=not exited,  # an exit is the config or the install, not luck
                    )
                await asyncio.sleep(0.2)  # polling readiness inside a deadline loop
        self._progress(f"litellm: ready after {time.monotonic() - started:.1f} s")

    async def _not_ready(self, session: aiohttp.ClientSession) -> str | None:
        """None once the proxy is ready and a chat completion went through it to the model;
        else what is missing."""
        root = self.base_url.removesuffix("/v1")
        body = {"model": MODEL_NAME, "messages": [{"role": "user", "content": "ready?"}]}
        headers = {"Authorization": f"Bearer {self.api_key}"}
        try:
            async with session.get(f"{root}/health/readiness") as ready:
                if ready.status != 200:
                    return f"readiness {ready.status}"
            url = f"{self.base_url}/chat/completions"
            async with session.post(url, json=body, headers=headers) as chat:
                return None if chat.status == 200 else f"chat completion {chat.status}"
        except (aiohttp.ClientError, TimeoutError) as exc:
            return type(exc).__name__
