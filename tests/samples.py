"""Valid sample events of every record, built from the ``.avsc`` so a new field needs no edit."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from schemas.catalog import load_raw
from schemas.envelope import Event

WHEN = datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=UTC)

# Fields whose models accept a closed set of values.
CLOSED: dict[str, Any] = {
    "status": None,  # per record, below
    "kind": None,
    "state": None,
    "breaker": "half_open",
    "severity": "warning",
    "decision": "rollback",
    "role": "assistant",
}
_PER_RECORD: dict[tuple[str, str], Any] = {
    ("SpecialistAnswered", "status"): "failed",
    ("ResponseDelivered", "status"): "passed",
    ("FeedbackGiven", "kind"): "explicit",
    ("NetworkFactRecorded", "fact"): "verdict",
    ("ImprovementProposed", "kind"): "temperature",
    ("SpecialistHealth", "state"): "degraded",
    ("AlertRaised", "state"): "firing",
    ("AnomalyDetected", "state"): "firing",
    ("AnomalyDetected", "kind"): "drift",
    ("BottleneckIdentified", "kind"): "model_slots",
    ("PerformanceCompared", "decision"): "keep",
    ("LessonLearned", "state"): "kept",
}


def _value(schema: Any, name: str) -> Any:
    if isinstance(schema, list):
        return _value(next(s for s in schema if s != "null"), name)
    if isinstance(schema, dict):
        kind = schema["type"]
        if schema.get("logicalType") == "timestamp-millis":
            return WHEN
        if kind == "array":
            return [_value(schema["items"], name)]
        if kind == "map":
            return {"k": _value(schema["values"], name)}
        if kind == "record":
            return {f["name"]: _value(f["type"], f["name"]) for f in schema["fields"]}
        return _value(kind, name)
    return {
        "string": f"{name}-ü✓",
        "int": 3,
        "long": 1 << 40,
        "double": 0.25,
        "boolean": True,
        "bytes": b"\x00\xff",
    }[schema]


def sample(model: type[Event]) -> Event:
    raw = load_raw(model.record_name)
    fields: dict[str, Any] = {}
    for f in raw["fields"]:
        closed = _PER_RECORD.get((model.record_name, f["name"]), CLOSED.get(f["name"]))
        fields[f["name"]] = closed if closed is not None else _value(f["type"], f["name"])
    return model.model_validate(fields)
