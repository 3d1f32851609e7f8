"""The configuration log: a durable history of every version, a cheap current view of
the latest, and one writer per version.

Two topics. ``guardian.config_history.v1`` is the system of record: one partition,
append-only, retention infinite (never compacted). ``guardian.config.v1`` is the
current view: compacted on one key, each record naming the history offset of its
version. A reader finds the latest version by reading the tail of the current view
and the history from that offset on; an audit or replay reads the whole history.

Writes are a compare-and-set by first-writer-wins. A writer reads the chain, appends
its proposal for ``latest + 1`` to the history (idempotent producer, acks=all), then
reads the history back past its own record: it won if its record is the one accepted
for that version. Every reader folds the same log in the same order with the same
rule (``agents.config_history``), so all agree which proposal won; a losing record
stays in the history, ignored by everyone. Only the winner writes the current view.
The history is not compacted because compaction keeps the *last* record of a key,
which would hand a version to the loser; with one partition and no compaction the
log order every reader sees never changes. A single writer consuming a requests
topic would serialise writes too, but every ``config set`` would then wait on a
running worker, and a deposed owner could still write until fenced; first-writer-wins
needs neither.

A loser re-derives its change on top of the winner (``publish_change``) and tries
again, or gives up with ``ConfigConflictError`` after a few attempts. The current
view is only a starting point: a stale or missing hint costs a longer read, never a
wrong version.

An older deployment (a compacted config topic, no history) migrates on first use:
the latest version on the current view starts the history. A fresh one starts it
with version 0, built from the first worker's settings.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from agents.config_history import ConfigChain, extends, fold
from agents.config_values import CONFIG_SCOPE
from connectors.config_topics import (
    HISTORY_OFFSET,
    PREVIOUS_OFFSET,
    Hint,
    append,
    config_topic,
    ensure_config_topics,
    history_topic,
    read_hint,
    read_history,
    read_seed,
)
from connectors.kafka import KafkaSettings
from schemas.errors import GuardianError
from schemas.network_events import ConfigChanged

__all__ = [
    "ConfigConflictError",
    "config_topic",
    "ensure_history",
    "history_topic",
    "publish_change",
    "publish_config",
    "read_config_history",
    "read_config_versions",
    "read_latest",
]
_log = logging.getLogger(__name__)
ATTEMPTS = 5
Derive = Callable[[ConfigChanged], ConfigChanged | None]
"""The change to propose on top of the latest version (None: nothing to change)."""


class ConfigConflictError(GuardianError):
    """Another writer took the config version this one proposed; deriving the change
    again on the new latest version can help."""

    retriable = True


async def read_config_versions(settings: KafkaSettings) -> dict[int, ConfigChanged]:
    """Every accepted version of the history, by number (for replay and audits)."""
    return fold(await read_history(settings)).versions


async def read_config_history(settings: KafkaSettings) -> list[ConfigChanged]:
    """Every accepted version, oldest first."""
    versions = await read_config_versions(settings)
    return [versions[v] for v in sorted(versions)]


async def read_latest(settings: KafkaSettings) -> ConfigChanged | None:
    """The latest version, from the current view's hint on (None: no history yet)."""
    return (await read_chain(settings))[0].latest


async def read_chain(settings: KafkaSettings) -> tuple[ConfigChain, Hint | None]:
    """The chain from the hinted version to the end of the history, and the hint it
    started from (None: the whole history was read)."""
    hint = await read_hint(settings)
    if hint is not None:
        records = await read_history(settings, hint.offset)
        first = records[0] if records else None
        if first is not None and (first.offset, first.event.event_id) == (
            hint.offset,
            hint.event_id,
        ):
            return fold(records), hint
        _log.warning("the config view's hint (offset %d) is stale; reading it all", hint.offset)
    return fold(await read_history(settings)), None


async def ensure_history(settings: KafkaSettings, genesis: ConfigChanged) -> ConfigChain:
    """The chain up to the latest version, starting the history first if it is empty:
    with the current view's latest version (migration), else ``genesis``. Idempotent:
    of concurrent starters the first record wins."""
    await ensure_config_topics(settings)
    chain, hint = await read_chain(settings)
    if chain.latest is None:
        seed = await read_seed(settings)
        if seed is not None:
            _log.warning("config history starts from version %d of the current view", seed.version)
        _, chain = await propose(settings, seed or genesis, ConfigChain())
    elif hint is None or hint.version < chain.latest.version:
        await _point_view(settings, chain)
    return chain


async def propose(
    settings: KafkaSettings, event: ConfigChanged, chain: ConfigChain
) -> tuple[bool, ConfigChain]:
    """Append ``event`` to the history on top of ``chain.latest`` and read it back:
    whether it won its version, and the chain from its base version to the end."""
    base = chain.offsets.get(event.previous_version) if chain.latest is not None else None
    headers = {} if base is None else {PREVIOUS_OFFSET: base}
    offset = await append(settings, history_topic(settings), str(event.version), event, headers)
    after = fold(await read_history(settings, base or 0))
    won = after.offsets.get(event.version) == offset
    if won:
        await _point_view(settings, after)
    return won, after


async def _point_view(settings: KafkaSettings, chain: ConfigChain) -> None:
    """Write the chain's latest version to the current view, with its history offset."""
    assert chain.latest is not None
    offset = chain.offsets[chain.latest.version]
    await append(
        settings, config_topic(settings), CONFIG_SCOPE, chain.latest, {HISTORY_OFFSET: offset}
    )


async def publish_config(settings: KafkaSettings, event: ConfigChanged) -> None:
    """Publish ``event`` as the next version, once: ``ConfigConflictError`` if there is
    no history yet (a worker starts it), if ``event`` does not build on the latest
    version, or if another writer took its version first."""
    await ensure_config_topics(settings)
    chain, _ = await read_chain(settings)
    if chain.latest is None:
        raise ConfigConflictError("no config history yet: a worker's first start begins it")
    if not extends(chain.latest, event):
        raise ConfigConflictError(
            f"version {event.version} does not follow the latest, {chain.latest.version}"
        )
    won, after = await propose(settings, event, chain)
    if not won:
        raise ConfigConflictError(_taken(event, after))


async def publish_change(
    settings: KafkaSettings, derive: Derive, genesis: ConfigChanged, *, attempts: int = ATTEMPTS
) -> ConfigChanged | None:
    """Publish ``derive(latest)`` as the next version; when another writer takes that
    version first, derive again on top of the new latest and retry. None when
    ``derive`` has nothing to change; ``ConfigConflictError`` after ``attempts`` losses."""
    chain = await ensure_history(settings, genesis)
    for _ in range(attempts):
        assert chain.latest is not None
        event = derive(chain.latest)
        if event is None:
            return None
        if not extends(chain.latest, event):
            raise ConfigConflictError(f"derived version {event.version} does not follow the latest")
        won, chain = await propose(settings, event, chain)
        if won:
            return event
        _log.warning("%s; deriving the change again", _taken(event, chain))
    raise ConfigConflictError(f"gave up after {attempts} lost races for a config version")


def _taken(event: ConfigChanged, chain: ConfigChain) -> str:
    winner = chain.versions.get(event.version)
    by = f"{winner.changed_by} ({winner.reason})" if winner else "another writer"
    return f"config version {event.version} was taken by {by}"
