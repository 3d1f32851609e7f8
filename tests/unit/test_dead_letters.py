"""What a dead letter keeps of its record: raw bytes, the PII masked byte for byte, or
nothing (no network; the real offline PII recognizers)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from agents.redaction import redact_bytes, redact_text
from connectors.pii import PiiSettings, PresidioPiiDetector
from schemas.codec import Codec
from schemas.request_events import RequestSubmitted
from streams.dead_letters import DeadLetterSettings, kept

EMAIL = "jane.doe@example.com"
CARD = "4111 1111 1111 1111"
PROMPT = f"Mail {EMAIL} the receipt for card {CARD}, please."


@pytest.fixture(scope="module")
def detector() -> PresidioPiiDetector:
    return PresidioPiiDetector()


def encoded() -> bytes:
    request = RequestSubmitted(
        event_id="e-1",
        request_id="r-1",
        occurred_at=datetime(2026, 1, 1, tzinfo=UTC),
        prompt=PROMPT,
    )
    return Codec().encode(request)


def test_a_redacted_record_keeps_its_length_and_still_decodes(
    detector: PresidioPiiDetector,
) -> None:
    raw = encoded()
    redacted = redact_bytes(raw, detector)
    assert len(redacted) == len(raw)
    assert EMAIL.encode() not in redacted
    assert CARD.encode() not in redacted
    prompt = Codec().decode(redacted, RequestSubmitted).prompt
    assert prompt == PROMPT.replace(EMAIL, "*" * len(EMAIL)).replace(CARD, "*" * len(CARD))


def test_bytes_that_are_not_utf8_stay_in_place(detector: PresidioPiiDetector) -> None:
    raw = b"\xff\xfe garbage then " + EMAIL.encode() + b" \x80 end"
    redacted = redact_bytes(raw, detector)
    assert redacted == raw.replace(EMAIL.encode(), b"*" * len(EMAIL))


def test_text_without_pii_is_unchanged(detector: PresidioPiiDetector) -> None:
    raw = "Bake at 230 C for 35 minutes; café ☕".encode()
    assert redact_bytes(raw, detector) is raw
    assert redact_text("tenant 'x' is not allowed", detector) == "tenant 'x' is not allowed"


@pytest.mark.parametrize(
    ("mode", "payload_has_email", "payload_empty"),
    [("raw", True, False), ("redacted", False, False), ("none", False, True)],
)
async def test_each_mode(
    mode: str, payload_has_email: bool, payload_empty: bool, detector: PresidioPiiDetector
) -> None:
    settings = DeadLetterSettings(payload=mode)
    reason = f"rejected a prompt mailing {EMAIL}"
    payload, shown = await kept(settings.payload, encoded(), reason, detector, PiiSettings())
    assert (EMAIL.encode() in payload) is payload_has_email
    assert (payload == b"") is payload_empty
    assert (EMAIL in shown) is (mode != "redacted")


async def test_redaction_without_the_workers_detector_builds_its_own() -> None:
    payload, _ = await kept("redacted", encoded(), "", None, PiiSettings())
    assert EMAIL.encode() not in payload


def test_the_default_keeps_raw_bytes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GUARDIAN_DEAD_LETTER_PAYLOAD", raising=False)
    assert DeadLetterSettings().payload == "raw"
    monkeypatch.setenv("GUARDIAN_DEAD_LETTER_PAYLOAD", "none")
    assert DeadLetterSettings().payload == "none"
