"""The record catalog: every ``.avsc`` (current and committed history) bound to its model.

The ``.avsc`` files are the source of truth; this module pairs each with the
pydantic model of the same name and computes the fingerprints the codec uses.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any, cast

from fastavro import parse_schema
from fastavro.schema import to_parsing_canonical_form

from schemas.envelope import Event
from schemas.network_events import (
    AlertRaised,
    AnomalyDetected,
    BottleneckIdentified,
    ConfigChanged,
    ExperimentConcluded,
    FailureDiagnosed,
    ImprovementProposed,
    LessonLearned,
    NetworkFactRecorded,
    PerformanceCompared,
    ProposalReviewed,
    SpecialistHealth,
    WorkerLoadReported,
)
from schemas.request_events import (
    ContextProvided,
    DeadLettered,
    DeadlinePassed,
    FeedbackGiven,
    RequestSubmitted,
    ResponseDelivered,
    SessionTurn,
    SpecialistAnswered,
    TaskAssigned,
    VerdictIssued,
)

MODELS: tuple[type[Event], ...] = (
    RequestSubmitted,
    TaskAssigned,
    SpecialistAnswered,
    VerdictIssued,
    ResponseDelivered,
    DeadLettered,
    DeadlinePassed,
    FeedbackGiven,
    FailureDiagnosed,
    ImprovementProposed,
    ProposalReviewed,
    ExperimentConcluded,
    ConfigChanged,
    SpecialistHealth,
    AlertRaised,
    SessionTurn,
    ContextProvided,
    NetworkFactRecorded,
    AnomalyDetected,
    WorkerLoadReported,
    BottleneckIdentified,
    PerformanceCompared,
    LessonLearned,
)
NAMESPACE = "guardian.events"

_POLY = 0xC15D213AA4D7A795  # CRC-64-AVRO polynomial, from the Avro specification
_TABLE: list[int] = []
for _i in range(256):
    _fp = _i
    for _ in range(8):
        _fp = (_fp >> 1) ^ (_POLY & -(_fp & 1))
    _TABLE.append(_fp)
_EMPTY = 0xC15D213AA4D7A795


def crc64_avro(data: bytes) -> int:
    """The Rabin fingerprint Avro single-object encoding names a schema by."""
    fp = _EMPTY
    for byte in data:
        fp = (fp >> 8) ^ _TABLE[(fp ^ byte) & 0xFF]
    return fp


@dataclass(frozen=True)
class SchemaVersion:
    """One writer schema: its record, the parsed schema and its fingerprint."""

    record_name: str
    version: str
    raw: dict[str, Any]
    parsed: dict[str, Any]
    canonical: str
    fingerprint: int


def _avro_dir() -> Any:
    return resources.files("schemas") / "avro"


def load_raw(record_name: str) -> dict[str, Any]:
    text = (_avro_dir() / f"{record_name}.avsc").read_text(encoding="utf-8")
    raw: dict[str, Any] = json.loads(text)
    return raw


def _version(record_name: str, version: str, raw: dict[str, Any]) -> SchemaVersion:
    parsed = cast(dict[str, Any], parse_schema(raw))
    canonical = to_parsing_canonical_form(raw)
    return SchemaVersion(
        record_name=record_name,
        version=version,
        raw=raw,
        parsed=parsed,
        canonical=canonical,
        fingerprint=crc64_avro(canonical.encode("utf-8")),
    )


def history(record_name: str) -> list[SchemaVersion]:
    """Committed previous versions, oldest first (``avro/history/<Record>/<n>.avsc``)."""
    folder = _avro_dir() / "history" / record_name
    if not folder.is_dir():
        return []
    files = sorted(
        (f for f in folder.iterdir() if f.name.endswith(".avsc")),
        key=lambda f: int(f.name.removesuffix(".avsc")),
    )
    return [
        _version(record_name, f.name.removesuffix(".avsc"), json.loads(f.read_text("utf-8")))
        for f in files
    ]


@dataclass(frozen=True)
class Catalog:
    """Current schema per record and every known writer schema by fingerprint."""

    models: dict[str, type[Event]]
    current: dict[str, SchemaVersion]
    by_fingerprint: dict[int, SchemaVersion]

    def model(self, record_name: str) -> type[Event]:
        return self.models[record_name]


@cache
def catalog() -> Catalog:
    models = {m.record_name: m for m in MODELS}
    current = {name: _version(name, "current", load_raw(name)) for name in models}
    by_fp: dict[int, SchemaVersion] = {}
    for name in models:
        for version in history(name):
            by_fp[version.fingerprint] = version
    for version in current.values():
        by_fp[version.fingerprint] = version
    return Catalog(models=models, current=current, by_fingerprint=by_fp)
