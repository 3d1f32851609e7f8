"""Stores for the cache of guardian-approved answers: in-process, or Redis when
configured (shared by every worker)."""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict
from redis.asyncio import Redis
from redis.exceptions import RedisError

from schemas.errors import GuardianError


class CacheSettings(BaseSettings):
    """The answer cache (``GUARDIAN_CACHE_*``)."""

    model_config = SettingsConfigDict(env_prefix="GUARDIAN_CACHE_", frozen=True)

    backend: Literal["memory", "redis", "off"] = "memory"
    redis_url: str = "redis://127.0.0.1:6379/0"
    ttl_s: float = Field(default=3600.0, gt=0)
    max_entries: int = Field(default=10_000, ge=1)
    """In-process store only: the oldest entries go first past this many."""


class CacheUnavailable(GuardianError):
    """The cache store did not answer; serving without it is always possible."""

    retriable = True


class MemoryCache:
    """A bounded in-process store with expiry (one per worker)."""

    def __init__(self, max_entries: int = 10_000, clock: Callable[[], float] = time.monotonic):
        self._entries: OrderedDict[str, tuple[float, bytes]] = OrderedDict()
        self._max = max_entries
        self._clock = clock

    async def get(self, key: str) -> bytes | None:
        found = self._entries.get(key)
        if found is None:
            return None
        expires, value = found
        if self._clock() >= expires:
            del self._entries[key]
            return None
        return value

    async def put(self, key: str, value: bytes, ttl_s: float) -> None:
        self._entries[key] = (self._clock() + ttl_s, value)
        self._entries.move_to_end(key)
        while len(self._entries) > self._max:
            self._entries.popitem(last=False)


class RedisCache:
    """Redis as the store: every worker sees every approved answer; Redis expires them."""

    def __init__(self, url: str, *, prefix: str = "guardian:answer:") -> None:
        self._redis = Redis.from_url(url)
        self._prefix = prefix

    async def get(self, key: str) -> bytes | None:
        try:
            value = await self._redis.get(self._prefix + key)
        except RedisError as exc:
            raise CacheUnavailable(f"redis get failed: {exc}") from exc
        return value if isinstance(value, bytes) else None

    async def put(self, key: str, value: bytes, ttl_s: float) -> None:
        try:
            await self._redis.set(self._prefix + key, value, px=int(ttl_s * 1000))
        except RedisError as exc:
            raise CacheUnavailable(f"redis set failed: {exc}") from exc

    async def aclose(self) -> None:
        await self._redis.aclose()


def build_cache(settings: CacheSettings, namespace: str = "") -> MemoryCache | RedisCache | None:
    if settings.backend == "off":
        return None
    if settings.backend == "redis":
        return RedisCache(settings.redis_url, prefix=f"guardian:{namespace}:answer:")
    return MemoryCache(settings.max_entries)
