"""The cache of approved answers: the in-process and Redis stores pass the same contract
tests, and through the pipeline a repeated request is a cache hit with no model call
while a new config version misses."""

from __future__ import annotations

import shutil
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from redis import Redis
from redis.exceptions import ConnectionError as RedisConnectionError

from agents.config_values import apply_change, config_changed
from connectors.cache_store import MemoryCache, RedisCache
from connectors.client import GuardianClient
from connectors.config_log import publish_config
from schemas import topics
from schemas.request_events import SpecialistAnswered
from streams.settings import AppSettings
from tests.integration.harness import pipeline, read_until
from tests.integration.test_pipeline import QA, wait_ready
from tests.loopback import free_port

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real redis-server from Debian's package on a free loopback port."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.fail("redis-server is not installed (make deps installs it)")
    port = free_port()
    folder = tmp_path_factory.mktemp("redis")
    proc = subprocess.Popen(
        [
            binary,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(folder),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    client = Redis(port=port)
    deadline = time.monotonic() + 30
    while True:
        try:
            client.ping()
            break
        except RedisConnectionError:
            if time.monotonic() > deadline or proc.poll() is not None:
                proc.kill()
                pytest.fail("redis-server did not answer")
            time.sleep(0.05)  # polling a starting server inside a deadline loop
    client.close()
    yield f"redis://127.0.0.1:{port}/0"
    proc.terminate()
    proc.wait(timeout=10)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(params=["memory", "redis"])
async def store(request: pytest.FixtureRequest, redis_url: str) -> AsyncIterator[object]:
    if request.param == "memory":
        yield MemoryCache(max_entries=100)
        return
    cache = RedisCache(redis_url, prefix=f"t{uuid.uuid4().hex}:")
    yield cache
    await cache.aclose()


async def test_a_store_keeps_and_returns_values(store: MemoryCache | RedisCache) -> None:
    assert await store.get("missing") is None
    await store.put("k", b"\x00value", ttl_s=60)
    assert await store.get("k") == b"\x00value"
    await store.put("k", b"newer", ttl_s=60)
    assert await store.get("k") == b"newer"


async def test_entries_expire(redis_url: str) -> None:
    clock = Clock()
    memory = MemoryCache(clock=clock)
    await memory.put("k", b"v", ttl_s=10)
    clock.now += 9.9
    assert await memory.get("k") == b"v"
    clock.now += 0.2
    assert await memory.get("k") is None
    prefix = f"t{uuid.uuid4().hex}:"
    cache = RedisCache(redis_url, prefix=prefix)
    await cache.put("k", b"v", ttl_s=10)
    ttl_ms = Redis.from_url(redis_url).pttl(prefix + "k")
    await cache.aclose()
    assert 0 < int(ttl_ms) <= 10_000


async def test_the_memory_store_is_bounded() -> None:
    memory = MemoryCache(max_entries=2)
    for key in ("a", "b", "c"):
        await memory.put(key, key.encode(), ttl_s=60)
    assert await memory.get("a") is None
    assert await memory.get("c") == b"c"


@pytest.mark.parametrize("backend", ["memory", "redis"])
async def test_a_repeated_request_is_a_cache_hit_and_a_new_config_misses(
    kafka_bootstrap: str, tmp_path: Path, redis_url: str, backend: str
) -> None:
    question, good = QA[1]
    with pipeline(kafka_bootstrap, tmp_path) as p:
        script = p.write_script({"default-answer": [{"answer": good}]})
        p.start_worker(
            GUARDIAN_MODEL_BACKEND="scripted",
            GUARDIAN_MODEL_SCRIPT_PATH=str(script),
            GUARDIAN_CACHE_BACKEND=backend,
            GUARDIAN_CACHE_REDIS_URL=redis_url,
        )
        await wait_ready(p)
        prompt = f"[[script:default-answer]] {question}"
        async with GuardianClient(p.kafka) as client:
            first = await client.ask(prompt)
            again = await client.ask(f"  {prompt.upper()}  ")  # same after normalising
            base = AppSettings(kafka=p.kafka).pipeline_config()
            newer = apply_change(base, "refine.max_rounds", "2")
            await publish_config(
                p.kafka,
                config_changed(
                    base,
                    newer,
                    changed_by="test",
                    reason="new version",
                    now=datetime.now(UTC),
                    event_id=uuid.uuid4().hex,
                ),
            )
            deadline = time.monotonic() + 60
            while True:
                after = await client.ask(prompt)
                if after.config_version == 1 or time.monotonic() > deadline:
                    break
        answers = await read_until(p, topics.ANSWERS, SpecialistAnswered, bool, timeout_s=5)
    assert first.cache_hit is False
    assert again.cache_hit is True
    assert again.status == "passed"
    assert again.content == first.content
    assert again.rounds == 0
    assert again.cached_from == first.event_id
    answered = {a.request_id for a in answers}
    assert first.request_id in answered
    assert again.request_id not in answered, "a cache hit calls no model"
    assert after.config_version == 1
    assert after.cache_hit is False, "a new config version misses"
