"""Masking the PII a detector finds in bytes that may or may not be text.

Every byte of a found span becomes ``*`` and nothing else moves, so a payload keeps
its length and framing: an Avro record stays decodable (each string keeps its byte
length) and the undecodable bytes of a broken one stay where they were.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from agents.ports import PiiDetector

MASK = b"*"
_ESCAPED = re.compile("[\udc80-\udcff]")


def redact_bytes(payload: bytes, detector: PiiDetector) -> bytes:
    """``payload`` with each span the detector reports as PII masked byte for byte."""
    # surrogateescape maps each byte that is not UTF-8 to one character, so offsets in
    # the text map back to bytes exactly; the detector sees those as spaces.
    text = payload.decode("utf-8", "surrogateescape")
    findings = detector.find(_ESCAPED.sub(" ", text))
    if not findings:
        return payload
    out = bytearray()
    cursor = 0
    for start, end in _merged((f.start, f.end) for f in findings):
        out += text[cursor:start].encode("utf-8", "surrogateescape")
        out += MASK * len(text[start:end].encode("utf-8", "surrogateescape"))
        cursor = end
    out += text[cursor:].encode("utf-8", "surrogateescape")
    return bytes(out)


def redact_text(text: str, detector: PiiDetector) -> str:
    """``text`` with each PII span replaced by ``*`` characters of the same length."""
    findings = detector.find(text)
    for start, end in reversed(_merged((f.start, f.end) for f in findings)):
        text = text[:start] + "*" * (end - start) + text[end:]
    return text


def _merged(spans: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
    """Overlapping spans joined, in order."""
    merged: list[tuple[int, int]] = []
    for start, end in sorted(spans):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(end, merged[-1][1]))
        else:
            merged.append((start, end))
    return merged
