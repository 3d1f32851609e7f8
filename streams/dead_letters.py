"""What a dead letter keeps of the record it stands for (``GUARDIAN_DEAD_LETTER_*``).

``raw`` keeps the bytes, so an operator can fix the cause and reprocess them as
they were; ``redacted`` masks the PII the recognizers find (the record stays
decodable, but what was masked is gone for good); ``none`` keeps only the
coordinates, and reprocessing must read the source topic while it still holds them.
"""

from __future__ import annotations

import asyncio
from functools import cache
from typing import Literal

from pydantic_settings import BaseSettings, SettingsConfigDict

from agents.ports import PiiDetector
from agents.redaction import redact_bytes, redact_text
from connectors.pii import PiiSettings, PresidioPiiDetector

PayloadMode = Literal["raw", "redacted", "none"]


class DeadLetterSettings(BaseSettings):
    """How much of a failed record its dead letter carries."""

    model_config = SettingsConfigDict(env_prefix="GUARDIAN_DEAD_LETTER_", frozen=True)

    payload: PayloadMode = "raw"


async def kept(
    mode: PayloadMode, value: bytes, reason: str, detector: PiiDetector | None, pii: PiiSettings
) -> tuple[bytes, str]:
    """The payload and reason a dead letter carries under ``mode``; the detector (the
    workers' own, else one built for this) runs in a thread, off the event loop."""
    if mode == "raw":
        return value, reason
    if mode == "none":
        return b"", reason
    scanner = detector or _own_detector(pii)
    return await asyncio.to_thread(_redact, scanner, value, reason)


def _redact(detector: PiiDetector, value: bytes, reason: str) -> tuple[bytes, str]:
    return redact_bytes(value, detector), redact_text(reason, detector)


@cache
def _own_detector(pii: PiiSettings) -> PiiDetector:
    """A detector for workers whose guardians do not check PII (built once)."""
    return PresidioPiiDetector(pii)
