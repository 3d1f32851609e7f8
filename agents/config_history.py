"""Which configuration versions the history log holds: a deterministic fold over the
log, so every reader (worker, CLI, replay, audit) agrees on each version.

The history is append-only and read in log order. A record is *accepted* when it
extends the chain: its ``version`` is the latest accepted version plus one and its
``previous_version`` is that version. The first record of the log starts the chain
whatever its version (version 0 at a fresh start, the migrated latest version of an
older deployment). Everything else is a losing proposal and is ignored by every
reader: a writer that raced another for version N and came second. Acceptance is
structural only (no value validation), so every release of the code agrees on it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime

from agents.config import PipelineConfig
from agents.config_values import CONFIG_SCOPE, config_of, to_values
from schemas.errors import GuardianError
from schemas.network_events import ConfigChanged

GENESIS_PREVIOUS = -1
"""The ``previous_version`` of version 0: nothing came before it."""


class UnknownConfigVersionError(GuardianError, LookupError):
    """A config version was asked for that the history does not hold."""

    retriable = False


def extends(latest: ConfigChanged | None, event: ConfigChanged) -> bool:
    """Whether ``event`` is accepted after ``latest`` (None: nothing accepted yet)."""
    if latest is None:
        return True
    return event.version == latest.version + 1 and event.previous_version == latest.version


@dataclass(frozen=True)
class Logged:
    """One record of the history log and where it sits."""

    offset: int
    event: ConfigChanged


@dataclass
class ConfigChain:
    """The accepted versions of a history log, and the proposals that lost."""

    versions: dict[int, ConfigChanged] = field(default_factory=dict)
    offsets: dict[int, int] = field(default_factory=dict)
    """Version -> the log offset of its accepted record."""
    rejected: list[Logged] = field(default_factory=list)
    latest: ConfigChanged | None = None

    def add(self, record: Logged) -> bool:
        """Fold one record in (log order); True if it was accepted."""
        if not extends(self.latest, record.event):
            self.rejected.append(record)
            return False
        self.latest = record.event
        self.versions[record.event.version] = record.event
        self.offsets[record.event.version] = record.offset
        return True


def fold(records: Iterable[Logged], start: ConfigChain | None = None) -> ConfigChain:
    """The chain of ``records`` in log order, continuing ``start`` if given."""
    chain = start if start is not None else ConfigChain()
    for record in records:
        chain.add(record)
    return chain


def genesis(
    config: PipelineConfig, *, now: datetime, event_id: str, changed_by: str
) -> ConfigChanged:
    """The event that starts a history with ``config`` (version 0 from settings)."""
    return ConfigChanged(
        event_id=event_id,
        request_id=CONFIG_SCOPE,
        occurred_at=now,
        config_version=config.version,
        version=config.version,
        previous_version=GENESIS_PREVIOUS,
        changed_by=changed_by,
        reason="first configuration",
        values=to_values(config),
    )


def config_at(versions: Mapping[int, ConfigChanged], version: int) -> PipelineConfig:
    """The configuration of ``version`` (for replay and audits)."""
    event = versions.get(version)
    if event is None:
        known = f"{min(versions)}..{max(versions)}" if versions else "none"
        raise UnknownConfigVersionError(f"config version {version} is unknown (held: {known})")
    return config_of(event)


def differing_keys(a: ConfigChanged, b: ConfigChanged) -> tuple[str, ...]:
    """Keys whose values differ between two versions (a missing key differs)."""
    keys = sorted(set(a.values) | set(b.values))
    return tuple(k for k in keys if a.values.get(k) != b.values.get(k))
