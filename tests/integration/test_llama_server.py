"""OpenAICompatibleLLM against a real llama.cpp server: llama-cpp-python's ``[server]``
extra serving the embedded SmolLM2 GGUF on loopback.

Skipped on a laptop without the server's packages; failed when ``CI`` is set.
"""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import NoReturn

import httpx
import pytest

from agents.ports import ChatMessage
from connectors.llm_embedded import EmbeddedModelLoadError, default_model_path
from connectors.llm_openai import OpenAICompatibleLLM, OpenAISettings
from tests.loopback import free_port

ALIAS = "smollm2"
START_DEADLINE_S = 120.0
STOP_DEADLINE_S = 10.0


def _unavailable(reason: str) -> NoReturn:
    if os.environ.get("CI"):
        pytest.fail(reason)
    pytest.skip(reason)


def _model_path() -> Path:
    try:
        # `python -m llama_cpp.server` needs uvicorn and the app's FastAPI stack.
        importlib.import_module("uvicorn")
        importlib.import_module("llama_cpp.server.app")
    except ImportError as exc:
        _unavailable(f"llama_cpp.server cannot run ({exc}): install llama-cpp-python[server]")
    try:
        return default_model_path()
    except EmbeddedModelLoadError as exc:
        _unavailable(str(exc))


def _wait_until_serving(server: subprocess.Popen[bytes], base_url: str, log: Path) -> None:
    """Until ``GET /v1/models`` answers 200, the process exits, or the deadline passes."""
    deadline = time.monotonic() + START_DEADLINE_S
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{base_url}/models", timeout=1.0).status_code == 200:
                return
        except httpx.TransportError:
            pass
        try:
            code = server.wait(timeout=0.2)  # doubles as the poll interval
        except subprocess.TimeoutExpired:
            continue
        pytest.fail(f"llama_cpp.server exited with {code}:\n{log.read_text()[-2000:]}")
    pytest.fail(
        f"llama_cpp.server not serving after {START_DEADLINE_S}s:\n{log.read_text()[-2000:]}"
    )


def _stop(server: subprocess.Popen[bytes]) -> None:
    server.terminate()
    try:
        server.wait(timeout=STOP_DEADLINE_S)
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait()


@pytest.fixture(scope="module")
def llama_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The base URL (``.../v1``) of a llama.cpp server running the embedded GGUF."""
    model = _model_path()
    port = free_port()
    log = tmp_path_factory.mktemp("llama-server") / "server.log"
    command = [
        *(sys.executable, "-m", "llama_cpp.server", "--model", str(model)),
        *("--host", "127.0.0.1", "--port", str(port), "--n_ctx", "1024"),
        *("--model_alias", ALIAS),
    ]
    with log.open("wb") as sink:
        server = subprocess.Popen(command, stdout=sink, stderr=subprocess.STDOUT)
    base_url = f"http://127.0.0.1:{port}/v1"
    try:
        _wait_until_serving(server, base_url, log)
        yield base_url
    finally:
        _stop(server)


@pytest.fixture
async def llm(llama_server: str) -> AsyncIterator[OpenAICompatibleLLM]:
    client = OpenAICompatibleLLM(
        OpenAISettings(base_url=llama_server, model=ALIAS, read_timeout_s=120.0)
    )
    yield client
    await client.aclose()


async def test_a_short_completion(llm: OpenAICompatibleLLM) -> None:
    messages = [ChatMessage(role="user", content="Name one colour.")]
    done = await llm.complete(messages, temperature=0.0, max_tokens=16)
    assert done.content.strip()
    assert done.prompt_tokens > 0
    assert 0 < done.completion_tokens <= 16
    assert done.model == ALIAS
    assert done.finish_reason in {"stop", "length"}


async def test_json_mode_answers_parse_as_json(llm: OpenAICompatibleLLM) -> None:
    messages = [
        ChatMessage(role="system", content="Reply with a JSON object."),
        ChatMessage(role="user", content='What is 2 + 2? Answer as JSON with the key "answer".'),
    ]
    done = await llm.complete(messages, temperature=0.0, max_tokens=64, json_mode=True)
    assert isinstance(json.loads(done.content), dict)
