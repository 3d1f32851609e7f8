"""The specialist's answer store: request_id -> the answers recorded for its tasks, in a
keyed faust table (co-partitioned with the task topics, changelog-backed), so a task
redelivered after a crash or a rebalance, or re-sent by the refine timer, is answered
with its recorded answer instead of a new model call. Entries leave after a retention,
and the oldest beyond a cap, as deletes, so the changelog compacts; the index of when
each entry was recorded follows writes, recovery and rebalances."""

from __future__ import annotations

import logging
import zlib
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import faust
from pydantic import ValidationError

from agents.answer_memory import RecordedAnswers, expired, recorded, with_answer
from schemas.request_events import SpecialistAnswered, TaskAssigned
from schemas.topics import TableSpec
from streams.keyed_table import keep_partitions, keyed_table

_log = logging.getLogger(__name__)

ANSWER_TABLE = TableSpec("specialist-answers")
"""request_id -> the answers recorded for its tasks, for a retention after the last."""


def encode(entry: RecordedAnswers) -> bytes:
    return zlib.compress(entry.model_dump_json().encode())


def decode(raw: bytes) -> RecordedAnswers:
    return RecordedAnswers.model_validate_json(zlib.decompress(raw))


@dataclass
class AnswerIndex:
    """When each request's entry was last written, for the expiry sweep."""

    recorded_at: dict[str, datetime] = field(default_factory=dict)

    def recovered(self, key: bytes, value: bytes | None) -> None:
        request_id = key.decode()
        entry = _readable(key, value) if value is not None else None
        if entry is None:
            self.recorded_at.pop(request_id, None)
        else:
            self.recorded_at[request_id] = entry.recorded_at

    def kept(self, partitions: set[int], count: int) -> None:
        keep_partitions(self.recorded_at, partitions, count)


def _readable(key: bytes, raw: bytes) -> RecordedAnswers | None:
    try:
        return decode(raw)
    except (zlib.error, ValidationError) as exc:
        _log.error("answer store entry %r is unreadable, ignored: %s", key, exc)
        return None


@dataclass
class AnswerStore:
    table: Any
    """faust.Table[bytes, bytes]: request_id -> encoded ``RecordedAnswers``."""
    index: AnswerIndex
    retain: timedelta
    cap: int

    def _entry(self, request_id: str) -> RecordedAnswers | None:
        key = request_id.encode()
        raw = self.table.get(key)
        return _readable(key, raw) if raw is not None else None

    def lookup(self, task: TaskAssigned) -> SpecialistAnswered | None:
        """The answer recorded for ``task`` (None: not answered, or expired)."""
        return recorded(self._entry(task.request_id), task)

    def record(self, task: TaskAssigned, answer: SpecialistAnswered, now: datetime) -> None:
        entry = with_answer(self._entry(task.request_id), task, answer, now)
        self.table[task.request_id.encode()] = encode(entry)
        self.index.recorded_at[task.request_id] = now

    def expire(self, now: datetime) -> int:
        """Delete the entries past their retention or beyond the cap; returns how many."""
        gone = expired(self.index.recorded_at, now, self.retain, self.cap)
        for request_id in gone:
            key = request_id.encode()
            if key in self.table:
                del self.table[key]
            self.index.recorded_at.pop(request_id, None)
        if gone:
            _log.info("%d requests' answers left the answer store", len(gone))
        return len(gone)

    def __len__(self) -> int:
        return len(self.index.recorded_at)


def create(app: faust.App, partitions: int, retain: timedelta, cap: int) -> AnswerStore:
    index = AnswerIndex()
    table = keyed_table(app, ANSWER_TABLE, partitions, index)
    return AnswerStore(table=table, index=index, retain=retain, cap=cap)
