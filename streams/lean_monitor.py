"""faust's monitor, kept to what the worker reads: when each partition's current event
came in (faust's livelock check), send errors and commit latency. Per-message,
per-event and per-table bookkeeping is dropped: our own metrics count those."""

from __future__ import annotations

from time import monotonic
from typing import Any

from faust.sensors.monitor import Monitor
from faust.types import TP


class LeanMonitor(Monitor):
    """A monitor without per-event work beyond one timestamp."""

    def on_message_in(self, tp: TP, offset: int, message: Any) -> None:
        """Nothing per message."""

    def on_stream_event_in(self, tp: TP, offset: int, stream: Any, event: Any) -> None:
        self.stream_inbound_time[tp] = monotonic()

    def on_stream_event_out(
        self, tp: TP, offset: int, stream: Any, event: Any, state: Any = None
    ) -> None:
        """Nothing per event."""

    def on_message_out(self, tp: TP, offset: int, message: Any) -> None:
        """Nothing per message."""

    def on_table_get(self, table: Any, key: Any) -> None:
        """Nothing per table read."""

    def on_table_set(self, table: Any, key: Any, value: Any) -> None:
        """Nothing per table write."""

    def on_table_del(self, table: Any, key: Any) -> None:
        """Nothing per table delete."""

    def on_send_initiated(
        self, producer: Any, topic: str, message: Any, keysize: int, valsize: int
    ) -> None:
        """Nothing per send; failures are still counted."""

    def on_send_completed(self, producer: Any, state: Any, metadata: Any) -> None:
        """Nothing per send."""
