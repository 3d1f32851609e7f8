"""Storage of the refinement state: request states and done markers in two keyed faust
tables, and the in-memory indexes over them (open deadlines, waiting tasks, and when
each finished request and marker finished). The indexes follow every write, every
entry recovered from a changelog and every rebalance; nothing scans the table."""

from __future__ import annotations

import logging
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import faust
from pydantic import ValidationError

from agents.refine import RequestState
from agents.retention import DoneMarker, finished_at
from schemas.codec import Codec
from schemas.request_events import ResponseDelivered
from schemas.topics import DONE_TABLE, REFINEMENT_TABLE
from streams.keyed_table import keep_partitions, keyed_table

_log = logging.getLogger(__name__)
_HEAD = struct.Struct(">qB")
"""A marker starts with when it finished (epoch millis) and its digest's length."""
_CODEC = Codec()
"""Markers hold the response in single-object Avro, readable without a registry."""


def _nothing() -> None:
    return None


@dataclass
class RefineIndex:
    """What the refine timer scans, by request id."""

    open_deadlines: dict[str, datetime] = field(default_factory=dict)
    open_tasks: dict[str, datetime] = field(default_factory=dict)
    """When each open request's oldest task still waiting for its verdict was assigned."""
    finished: dict[str, datetime] = field(default_factory=dict)
    """Finished requests whose full state is still in the table."""
    markers: dict[str, datetime] = field(default_factory=dict)
    parsed: int = 0
    """Table entries parsed to index them (recovered ones; a write indexes its state)."""
    on_parsed: Callable[[], None] = _nothing

    def track(self, request_id: str, state: RequestState | None) -> None:
        """Index one request as it now is (None: its state is gone)."""
        self.open_deadlines.pop(request_id, None)
        self.open_tasks.pop(request_id, None)
        self.finished.pop(request_id, None)
        if state is None:
            return
        done = finished_at(state)
        if done is not None:
            self.finished[request_id] = done
            return
        self.open_deadlines[request_id] = state.deadline_at
        waiting = [t.occurred_at for t in state.open_tasks]
        if waiting:
            self.open_tasks[request_id] = min(waiting)

    def parse(self, key: bytes, raw: bytes) -> RequestState | None:
        self.parsed += 1
        self.on_parsed()
        try:
            return RequestState.model_validate_json(raw)
        except ValidationError as exc:
            _log.error("refinement table entry %r is unreadable, not indexed: %s", key, exc)
            return None


@dataclass
class StateListener:
    """Listens to the state table: recovered entries are parsed and indexed."""

    index: RefineIndex

    def recovered(self, key: bytes, value: bytes | None) -> None:
        state = self.index.parse(key, value) if value is not None else None
        self.index.track(key.decode(), state)

    def kept(self, partitions: set[int], count: int) -> None:
        for index in (self.index.open_deadlines, self.index.open_tasks, self.index.finished):
            keep_partitions(index, partitions, count)


@dataclass
class MarkerListener:
    """Listens to the marker table: a recovered marker is indexed by its head alone."""

    index: RefineIndex

    def recovered(self, key: bytes, value: bytes | None) -> None:
        if value is None:
            self.index.markers.pop(key.decode(), None)
        else:
            self.index.markers[key.decode()] = marker_done_at(value)

    def kept(self, partitions: set[int], count: int) -> None:
        keep_partitions(self.index.markers, partitions, count)


@dataclass
class RefineTables:
    states: Any
    """request_id (bytes) -> RequestState JSON: open requests, and finished ones until
    their retention is over."""
    markers: Any
    """request_id (bytes) -> encoded ``DoneMarker`` of a finished request."""
    index: RefineIndex = field(default_factory=RefineIndex)


def create(app: faust.App, partitions: int, on_parsed: Callable[[], None]) -> RefineTables:
    index = RefineIndex(on_parsed=on_parsed)
    return RefineTables(
        states=keyed_table(app, REFINEMENT_TABLE, partitions, StateListener(index)),
        markers=keyed_table(app, DONE_TABLE, partitions, MarkerListener(index)),
        index=index,
    )


def encode_marker(marker: DoneMarker) -> bytes:
    """When it finished, the payload digest, and the response (Avro, compressed)."""
    digest = marker.payload_digest.encode()
    millis = int(marker.done_at.timestamp() * 1000)
    body = zlib.compress(_CODEC.encode(marker.response))
    return _HEAD.pack(millis, len(digest)) + digest + body


def decode_marker(raw: bytes) -> DoneMarker:
    _, size = _HEAD.unpack_from(raw)
    start = _HEAD.size
    digest = raw[start : start + size].decode()
    response = _CODEC.decode(zlib.decompress(raw[start + size :]), ResponseDelivered)
    return DoneMarker(payload_digest=digest, response=response)


def marker_done_at(raw: bytes) -> datetime:
    millis, _ = _HEAD.unpack_from(raw)
    return datetime.fromtimestamp(millis / 1000, tz=UTC)
