"""Deterministic event ids: the same decision on the same input gets the same id,
so a re-emitted event is recognisably the same event."""

from __future__ import annotations

import hashlib


def stable_id(*parts: object) -> str:
    digest = hashlib.blake2b("\x1f".join(str(p) for p in parts).encode(), digest_size=16)
    return digest.hexdigest()


def task_id(request_id: str, subtask: str, round_: int) -> str:
    return f"{request_id}/{subtask}/{round_}"
