"""Who may call the gateway, and how often: API keys kept as SHA-256 digests, each
naming its tenant, and a token bucket per caller for the rate-limited endpoints."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass

from agents.gateway import ApiError

_LINE = re.compile(r"^(?P<digest>[0-9a-f]{64})\s+(?P<tenant>[a-z0-9][a-z0-9_-]{0,63})$")


def key_digest(key: str) -> str:
    """What the key file keeps: a key is random and long, so a plain SHA-256 suffices
    (a slow password hash guards guessable secrets, which keys are not)."""
    return hashlib.sha256(key.encode()).hexdigest()


def read_keys(text: str) -> dict[str, str]:
    """The key file: ``<sha256 hex of the key> <tenant>`` per line; ``#`` starts a
    comment. ``ValueError`` names the first bad line."""
    keys: dict[str, str] = {}
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        match = _LINE.match(line)
        if match is None:
            raise ValueError(
                f"line {number}: expected '<sha256 hex of the key> <tenant>', got {line[:40]!r}"
            )
        keys[match["digest"]] = match["tenant"]
    return keys


def tenant_for(keys: Mapping[str, str], authorization: str | None) -> str:
    """The tenant of the bearer key in the ``Authorization`` header; 401 without one
    or with a key the file does not hold."""
    if not authorization or not authorization.startswith("Bearer "):
        raise _unauthorized("no API key: send 'Authorization: Bearer <key>'")
    tenant = keys.get(key_digest(authorization.removeprefix("Bearer ").strip()))
    if tenant is None:
        raise _unauthorized("the API key is not valid")
    return tenant


def _unauthorized(message: str) -> ApiError:
    return ApiError(401, message, "invalid_api_key", type="authentication_error")


@dataclass(frozen=True)
class Bucket:
    """A token bucket: ``tokens`` left at ``at`` (seconds on a monotonic clock)."""

    tokens: float
    at: float


def take(bucket: Bucket | None, now: float, *, rate: float, burst: float) -> tuple[Bucket, float]:
    """Take one token: the bucket after, and 0.0, or, when it is empty, the bucket
    unchanged and the seconds until a token is back."""
    if bucket is None:
        bucket = Bucket(tokens=burst, at=now)
    tokens = min(burst, bucket.tokens + (now - bucket.at) * rate)
    if tokens >= 1.0:
        return Bucket(tokens - 1.0, now), 0.0
    return Bucket(tokens, now), (1.0 - tokens) / rate
