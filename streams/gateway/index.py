"""The recent requests the trail endpoint can find: who asked (the tenant) and when,
so a trail is read from that stretch of the request's partitions, never from offset 0.

Fed by this gateway's own submissions and by every response the shared reader sees
(those of other gateways' requests too); bounded, oldest entry out first.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

from schemas.envelope import datetime_to_millis
from schemas.request_events import ResponseDelivered

MARGIN_MS = 2_000
"""Slack on both ends of a window: the broker stamps a record when it is produced,
a little after the event's own time."""


@dataclass(frozen=True)
class Seen:
    tenant: str
    since_ms: int
    until_ms: int | None = None
    """When the final response was produced; None while the request is in flight."""

    def window(self, now_ms: int) -> tuple[int, int]:
        until = now_ms if self.until_ms is None else self.until_ms
        return self.since_ms - MARGIN_MS, until + MARGIN_MS


class RequestIndex:
    def __init__(self, entries: int) -> None:
        self._entries = entries
        self._seen: OrderedDict[str, Seen] = OrderedDict()

    def __len__(self) -> int:
        return len(self._seen)

    def get(self, request_id: str) -> Seen | None:
        return self._seen.get(request_id)

    def submitted(self, request_id: str, tenant: str, at_ms: int) -> None:
        self._put(request_id, Seen(tenant, at_ms))

    def answered(self, response: ResponseDelivered) -> None:
        """A final response (one to another submission of the id is not the request's)."""
        if not response.is_final:
            return
        until = datetime_to_millis(response.occurred_at)
        known = self._seen.get(response.request_id)
        since = known.since_ms if known else until - int(response.latency_ms)
        self._put(response.request_id, Seen(response.tenant, since, until))

    def _put(self, request_id: str, seen: Seen) -> None:
        self._seen[request_id] = seen
        self._seen.move_to_end(request_id)
        while len(self._seen) > self._entries:
            self._seen.popitem(last=False)
