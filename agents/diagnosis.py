"""The diagnostician: failing verdicts over a time window, grouped by what they share,
turned into root-cause diagnoses with their evidence.

A group is (specialist, model, prompt version, config version); within it each
failure class is counted once per verdict. Verdicts of an experiment's treatment
arm are left to the experiment that judges them. Windows are tumbling, aligned to
the epoch and placed by each verdict's own time, so every run over the same verdicts
forms the same windows; a window closes once the event time has passed its end by
its allowed lateness.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from pydantic import BaseModel, ConfigDict

from agents.ids import stable_id
from agents.judged import Judged
from schemas.envelope import Millis
from schemas.network_events import FailureDiagnosed

MAX_EXAMPLES = 5
"""Example request ids per diagnosis: the smallest ids, so that the evidence does not
depend on the order in which partitions were read."""
MAX_LATENESS = timedelta(seconds=30)
"""How long after its end a window still takes verdicts (those of a partition read a
little behind the others); at most the window's own length."""
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

_MODEL_ERRORS = {
    "timeout": "timeout",
    "rate_limited": "rate_limited",
    "unavailable": "unavailable",
    "circuit_open": "unavailable",
}
_CLASSES = {
    "low_alignment": "low_alignment",
    "pii": "safety",
    "leak": "safety",
    "refusal": "safety",
    "format": "format",
    "incomplete": "incomplete",
    "empty": "empty",
    "low_score": "low_score",
}


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class GroupKey(_Frozen):
    specialist: str
    model: str
    prompt_version: str
    config_version: int


class ClassCount(_Frozen):
    failure_class: str
    failures: int = 0
    examples: tuple[str, ...] = ()


class GroupCount(_Frozen):
    key: GroupKey
    total: int = 0
    classes: tuple[ClassCount, ...] = ()


class DiagnosisWindow(_Frozen):
    """Counts of one tumbling window ``[start, end)``; a value of the stage's table."""

    start: Millis
    end: Millis
    groups: tuple[GroupCount, ...] = ()

    @property
    def window_id(self) -> str:
        return f"{self.start.isoformat()}/{self.end.isoformat()}"


def open_window(start: datetime, length: timedelta) -> DiagnosisWindow:
    return DiagnosisWindow(start=start, end=start + length)


def next_window(window: DiagnosisWindow) -> DiagnosisWindow:
    """The empty window that follows ``window``."""
    return open_window(window.end, window.end - window.start)


def aligned(at: datetime, length: timedelta) -> datetime:
    """The start of the epoch-aligned window of ``length`` that holds ``at``."""
    return at - (at - _EPOCH) % length


def window_at(at: datetime, length: timedelta) -> DiagnosisWindow:
    """The empty epoch-aligned window of ``length`` that holds ``at``."""
    return open_window(aligned(at, length), length)


def lateness(length: timedelta) -> timedelta:
    return min(length, MAX_LATENESS)


def closed(window: DiagnosisWindow, now: datetime) -> bool:
    """Whether event time ``now`` is past the window's end and its allowed lateness."""
    return now >= window.end + lateness(window.end - window.start)


def failure_classes(verdict: Judged) -> tuple[str, ...]:
    """The verdict's failure classes in the diagnostician's vocabulary, each once.

    Model errors become ``timeout``, ``rate_limited``, ``unavailable`` or
    ``model_error``; PII, leaks and refusals become ``safety``; a class this
    module does not know keeps its own name.
    """
    if verdict.passed:
        return ()
    raw = verdict.failure_classes or ("low_score",)
    if "model_error" in raw:
        kinds = [_MODEL_ERRORS[c] for c in raw if c in _MODEL_ERRORS]
        return (kinds[0] if kinds else "model_error",)
    mapped = (_CLASSES.get(c, c) for c in raw)
    return tuple(dict.fromkeys(mapped))


def _prompt_version(verdict: Judged) -> str:
    return verdict.prompt_version


def counts(verdict: Judged) -> bool:
    """Whether the diagnostician counts ``verdict`` (live config, not a treatment arm)."""
    return verdict.variant is None or not verdict.variant.startswith("treatment")


def observe(window: DiagnosisWindow, verdict: Judged) -> DiagnosisWindow:
    """Count ``verdict`` when it falls in the window (the caller drops duplicates)."""
    inside = window.start <= verdict.occurred_at < window.end
    if not inside or not counts(verdict):
        return window
    key = GroupKey(
        specialist=verdict.specialist,
        model=verdict.model,
        prompt_version=_prompt_version(verdict),
        config_version=verdict.config_version,
    )
    others = [g for g in window.groups if g.key != key]
    group = next((g for g in window.groups if g.key == key), GroupCount(key=key))
    group = _count(group, failure_classes(verdict), verdict.request_id)
    groups = tuple(sorted([*others, group], key=_group_order))
    return window.model_copy(update={"groups": groups})


def _group_order(group: GroupCount) -> tuple[str, str, str, int]:
    k = group.key
    return (k.specialist, k.model, k.prompt_version, k.config_version)


def _count(group: GroupCount, classes: tuple[str, ...], request_id: str) -> GroupCount:
    by_class = {c.failure_class: c for c in group.classes}
    for name in classes:
        old = by_class.get(name, ClassCount(failure_class=name))
        examples = tuple(sorted({*old.examples, request_id})[:MAX_EXAMPLES])
        by_class[name] = ClassCount(
            failure_class=name, failures=old.failures + 1, examples=examples
        )
    ordered = tuple(by_class[name] for name in sorted(by_class))
    return group.model_copy(update={"total": group.total + 1, "classes": ordered})


def diagnose(
    window: DiagnosisWindow, now: datetime, min_failures: int = 5, min_rate: float = 0.2
) -> list[FailureDiagnosed]:
    """A diagnosis per (group, class) with at least ``min_failures`` failures that are at
    least ``min_rate`` of the group's verdicts. Call it once the window has closed; the
    same window always gives the same diagnoses, ids included."""
    found = []
    for group in window.groups:
        for cls in group.classes:
            rate = cls.failures / group.total
            if cls.failures >= min_failures and rate >= min_rate:
                found.append(_diagnosis(window, group, cls, rate, now))
    return found


def diagnosis_id(window: DiagnosisWindow, key: GroupKey, failure_class: str) -> str:
    return stable_id(
        "diagnosis",
        window.window_id,
        key.specialist,
        key.model,
        key.prompt_version,
        key.config_version,
        failure_class,
    )


def _diagnosis(
    window: DiagnosisWindow, group: GroupCount, cls: ClassCount, rate: float, now: datetime
) -> FailureDiagnosed:
    key = group.key
    did = diagnosis_id(window, key, cls.failure_class)
    return FailureDiagnosed(
        event_id=stable_id(did, "event"),
        request_id=did,
        occurred_at=now,
        config_version=key.config_version,
        diagnosis_id=did,
        window_start=window.start,
        window_end=window.end,
        specialist=key.specialist,
        model=key.model,
        prompt_version=key.prompt_version,
        failure_class=cls.failure_class,
        failures=cls.failures,
        total=group.total,
        rate=round(rate, 6),
        example_request_ids=cls.examples,
        summary=_summary(window, key, cls, group.total, rate),
    )


def _summary(
    window: DiagnosisWindow, key: GroupKey, cls: ClassCount, total: int, rate: float
) -> str:
    prompt = f" prompt {key.prompt_version}" if key.prompt_version else ""
    return (
        f"{cls.failure_class}: {cls.failures} of {total} verdicts ({rate:.0%}) for "
        f"{key.specialist}/{key.model}{prompt} under config v{key.config_version}, "
        f"{window.start:%Y-%m-%d %H:%M}-{window.end:%H:%M} UTC"
    )
