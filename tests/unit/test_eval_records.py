"""``guardian eval``'s record files: a run's arms read back give the same summary."""

from __future__ import annotations

import json
from pathlib import Path

from streams.eval.run import ARMS, ArmResult, Outcome, _record, recorded, summary


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
