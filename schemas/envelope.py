"""The envelope every event carries and the base class of every event model."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated, Any, ClassVar, Self

from pydantic import AfterValidator, BaseModel, ConfigDict


def _to_utc_millis(value: datetime) -> datetime:
    if value.tzinfo is None:
        raise ValueError("timestamps must be timezone-aware")
    value = value.astimezone(UTC)
    return value.replace(microsecond=value.microsecond // 1000 * 1000)


Millis = Annotated[datetime, AfterValidator(_to_utc_millis)]
"""A UTC instant at millisecond precision: what Avro's timestamp-millis holds."""


def new_event_id() -> str:
    return uuid.uuid4().hex


def millis_to_datetime(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


def datetime_to_millis(value: datetime) -> int:
    return int(value.timestamp() * 1000)


class Event(BaseModel):
    """Base of every record: frozen, no extra fields, the envelope first.

    ``request_id`` is the partition key of every request-scoped topic; system
    events put their subject id there (each record's doc says which).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")
    record_name: ClassVar[str]

    event_id: str
    request_id: str
    occurred_at: Millis
    config_version: int = 0
    variant: str | None = None

    @classmethod
    def create(cls, *, request_id: str, occurred_at: datetime, **fields: Any) -> Self:
        """Build an event with a fresh ``event_id`` (ids and time are passed in by callers
        that need determinism: give ``event_id`` explicitly in ``fields``)."""
        fields.setdefault("event_id", new_event_id())
        return cls(request_id=request_id, occurred_at=occurred_at, **fields)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.record_name = cls.__name__
