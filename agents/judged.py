"""What the guardian network reads of a verdict and of feedback: the full events, or the
compact facts the aggregator keeps of them. Both fit these shapes."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Protocol


class Flag(Protocol):
    """One guardian's pass or fail."""

    @property
    def guardian(self) -> str: ...
    @property
    def passed(self) -> bool: ...


class Fact(Protocol):
    """What every event the network reads carries: which event, for which request, when."""

    @property
    def event_id(self) -> str: ...
    @property
    def request_id(self) -> str: ...
    @property
    def occurred_at(self) -> datetime: ...


class Judged(Fact, Protocol):
    """A guardian verdict on one answer."""

    @property
    def config_version(self) -> int: ...
    @property
    def variant(self) -> str | None: ...
    @property
    def round(self) -> int: ...
    @property
    def passed(self) -> bool: ...
    @property
    def score(self) -> float: ...
    @property
    def threshold(self) -> float: ...
    @property
    def failure_classes(self) -> Sequence[str]: ...
    @property
    def scores(self) -> Sequence[Flag]: ...
    @property
    def specialist(self) -> str: ...
    @property
    def model(self) -> str: ...
    @property
    def prompt_version(self) -> str: ...


class Rated(Fact, Protocol):
    """A user's feedback on a delivered answer."""

    @property
    def kind(self) -> str: ...
    @property
    def rating(self) -> float | None: ...
    @property
    def signal(self) -> str | None: ...
