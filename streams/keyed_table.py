"""A faust table placed by its keys: an entry lives in the partition its key's records go
to, so a timer can delete it too (faust's own tables take the partition of the record
being handled). It tells a listener what it recovers and which partitions it keeps, so
in-memory indexes follow recovery and rebalances without scanning the table."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, MutableMapping
from typing import Any, Protocol

import faust

from connectors.kafka import partition_for
from schemas.topics import TableSpec

_log = logging.getLogger(__name__)


class TableListener(Protocol):
    def recovered(self, key: bytes, value: bytes | None) -> None:
        """An entry read back from the changelog (None: deleted)."""

    def kept(self, partitions: set[int], count: int) -> None:
        """This worker now holds only ``partitions`` of ``count``: drop the others."""


class KeyedTable(faust.Table[bytes, bytes]):
    """bytes -> bytes, in memory, changelog-backed; see the module docstring."""

    def __init__(
        self, app: faust.App, *, listener: TableListener, partitions: int, **kwargs: Any
    ) -> None:
        super().__init__(app, partitions=partitions, **kwargs)
        self.listener = listener
        self.count = partitions

    def info(self) -> Mapping[str, Any]:
        return {**super().info(), "listener": self.listener}

    def partition_for_key(self, key: Any) -> int:
        return partition_for(bytes(key), self.count)

    def apply_changelog_batch(self, batch: Iterable[Any]) -> None:
        events = list(batch)
        super().apply_changelog_batch(events)
        for key in dict.fromkeys(bytes(event.key) for event in events):
            self.listener.recovered(key, self.data.get(key))

    async def on_rebalance(
        self, assigned: Any, revoked: Any, newly_assigned: Any, generation_id: int = 0
    ) -> None:
        await super().on_rebalance(assigned, revoked, newly_assigned, generation_id)
        name = self.changelog_topic_name
        actives = self.app.assignor.assigned_actives()
        self._keep({tp.partition for tp in actives if tp.topic == name})

    async def on_recovery_completed(self, active_tps: Any, standby_tps: Any) -> None:
        await super().on_recovery_completed(active_tps, standby_tps)
        self._keep({tp.partition for tp in active_tps})

    def _keep(self, partitions: set[int]) -> None:
        """Drop, locally and without tombstones, the entries of partitions this worker no
        longer holds: their new owner recovers them from the changelog."""
        count = self.count
        gone = [k for k in list(self.data.keys()) if partition_for(k, count) not in partitions]
        for key in gone:
            self.data.pop(key, None)
        if gone:
            _log.info("table %s: dropped %d entries of revoked partitions", self.name, len(gone))
        self.listener.kept(partitions, count)


def keep_partitions(index: MutableMapping[str, Any], partitions: set[int], count: int) -> None:
    """Drop from an index by string key the keys of partitions other than ``partitions``."""
    for key in [k for k in index if partition_for(k.encode(), count) not in partitions]:
        del index[key]


def keyed_table(
    app: faust.App, spec: TableSpec, partitions: int, listener: TableListener
) -> KeyedTable:
    """The table of ``spec``, registered with ``app``; its changelog gets the spec's configs."""
    table = KeyedTable(
        app,
        listener=listener,
        name=spec.name,
        default=None,
        key_type=bytes,
        value_type=bytes,
        partitions=partitions,
        extra_topic_configs=spec.config(),
        beacon=app.tables.beacon,
    )
    app.tables.add(table)
    return table
