"""``guardian eval``'s record files (a run's arms read back give the same summary) and its
subsets of a task set."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest

from schemas.request_events import Constraint
from streams.eval.run import (
    ARMS,
    ArmResult,
    Outcome,
    _record,
    only,
    recorded,
    spread,
    summary,
)


def outcome(task: str, passed: bool, rounds: int = 1) -> Outcome:
    return Outcome(task, passed, "passed" if passed else "failed", rounds, 10, 1.0, "", "text")


def test_recorded_arms_give_the_run_s_summary_back(tmp_path: Path) -> None:
    single = [outcome("t1", True), outcome("t2", False), outcome("t3", False)]
    refined = [outcome("t1", False, 3), outcome("t2", True, 2), outcome("t3", True, 2)]
    declared = [outcome("t1", True, 2), outcome("t2", True, 2), outcome("t3", True, 2)]
    _record(tmp_path / "a" / "arm-a.jsonl", single)
    _record(tmp_path / "b" / "arm-c.jsonl", refined)
    _record(tmp_path / "b" / "arm-cplus.jsonl", declared)
    found = [r for folder in (tmp_path / "a", tmp_path / "b") for r in recorded(folder)]
    assert [r.arm.name for r in found] == ["A", "C", "C+"]
    expected = [
        ArmResult(ARMS["A"], single),
        ArmResult(ARMS["C"], refined),
        ArmResult(ARMS["C+"], declared),
    ]
    assert summary(found) == summary(expected)
    assert summary(found)[-1] == (
        "eval: 3 tasks, single-shot 33.3%, refined 66.7%, gain +33.3 points, flips to worse 33.3%"
    )
    line = json.loads((tmp_path / "a" / "arm-a.jsonl").read_text().splitlines()[0])
    assert line["task_id"] == "t1"
    assert line["passed"] is True


def test_an_arm_s_first_rounds_kept_are_compared_with_single_shot_word_for_word() -> None:
    def kept(task: str, content: str, best_round: int) -> Outcome:
        return Outcome(task, False, "failed", best_round, 10, 1.0, "", content, best_round)

    single = ArmResult(ARMS["A"], [kept(t, f"answer {t}", 1) for t in ("t1", "t2", "t3", "t4")])
    refined = ArmResult(
        ARMS["C"],
        [
            kept("t1", "answer t1", 1),
            kept("t2", "another draw", 1),  # the first round, sampled differently
            kept("t3", "a re-ask's answer", 2),
            kept("t4", "", 0),  # no answer
        ],
    )
    assert refined.first_rounds_alike(single) == (1, 2)
    declared = ArmResult(ARMS["C+"], refined.outcomes)  # decodes under its constraints
    assert declared.first_rounds_alike(single) == (0, 0)
    assert single.first_rounds_alike(single) == (0, 0)
    lines = summary([single, refined])
    assert lines[1].endswith("first round kept in 2 tasks, 1 as single shot's")
    assert "first round kept" not in lines[0]


@dataclass(frozen=True)
class _Task:
    task_id: str
    prompt: str
    answer_format: str = "text"
    constraints: tuple[Constraint, ...] = ()

    def passes(self, answer: str) -> bool:
        return bool(answer)

    def declared(self) -> tuple[Constraint, ...]:
        return self.constraints


def test_a_subset_keeps_the_tasks_with_an_exact_signal() -> None:
    cap = Constraint(kind="words", relation="at_most", count=50)
    tasks = [
        _Task("plain", "What is the capital of France?"),
        _Task("stated", "Describe Paris in at most 50 words."),
        _Task("declared", "Describe Paris.", constraints=(cap,)),
    ]
    assert [t.task_id for t in only(tasks, "stated")] == ["stated"]
    assert [t.task_id for t in only(tasks, "declared")] == ["declared"]
    assert [t.task_id for t in only(tasks, None)] == ["plain", "stated", "declared"]
    with pytest.raises(ValueError, match="declared or stated"):
        only(tasks, "hard")


def test_a_spread_takes_tasks_at_even_steps_across_the_set() -> None:
    tasks = [_Task(f"t{i}", "prompt") for i in range(10)]
    assert [t.task_id for t in spread(tasks, 4)] == ["t0", "t2", "t5", "t7"]
    assert [t.task_id for t in spread(tasks, 1)] == ["t0"]
    assert spread(tasks, 25) == tasks
    with pytest.raises(ValueError, match="one or more"):
        spread(tasks, 0)
