"""The one in-process consumer of the verdicts besides refine: each verdict is decoded
once and handed to every observer (diagnostician window, experiment tallies,
meta-guardian accuracy) in a fixed order. Each observer runs inside the stage loop
under its own stage name, so its failure is counted and dead-lettered as its own and
the observers after it still see the verdict."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass

from schemas import topics
from schemas.request_events import VerdictIssued
from streams.runtime import Runtime
from streams.stage import Record, run

STAGE = "verdict_watchers"


@dataclass(frozen=True)
class VerdictObserver:
    """Something that keeps an aggregate of the verdicts: ``observe(verdict)``."""

    stage: str
    """Its name in metrics and dead letters (a closed label)."""
    observe: Callable[[VerdictIssued], Awaitable[None]]


@dataclass(frozen=True)
class _Delivery:
    """A record as the stage loop reads an event: its ``message`` and ``value``."""

    message: Record
    value: bytes


class _Once:
    """A stream of one record, so that one observer's call goes through the stage loop."""

    def __init__(self, record: Record) -> None:
        self._record = record

    async def events(self) -> AsyncIterator[_Delivery]:
        yield _Delivery(self._record, self._record.value)


def register(rt: Runtime, *observers: VerdictObserver) -> None:
    """One faust agent on the verdicts topic for ``observers``, called in this order."""

    @rt.app.agent(rt.topic(topics.VERDICTS), name=STAGE)
    async def verdict_watchers(stream: object) -> None:
        await run(rt, STAGE, stream, lambda r: watch(rt, observers, r))


async def watch(rt: Runtime, observers: Sequence[VerdictObserver], record: Record) -> None:
    """Decode ``record`` once (undecodable: dead-lettered once, under this stage), then
    give the verdict to each observer in turn."""
    verdict = rt.codec.decode(record.value, VerdictIssued)
    for observer in observers:
        await run(rt, observer.stage, _Once(record), _calling(observer, verdict))


def _calling(
    observer: VerdictObserver, verdict: VerdictIssued
) -> Callable[[Record], Awaitable[None]]:
    async def call(_record: Record) -> None:
        await observer.observe(verdict)

    return call
