"""The project's task set: at least 100 tasks, each with a reference that meets its
declared checks, a draft that misses them, and a prompt that states them in words the
constraint guardian finds."""

from __future__ import annotations

import pytest

from agents.constraints import check, stated_in
from streams.eval.project_set import Task, tasks

TASKS = tasks()


def test_the_set_has_at_least_a_hundred_tasks_with_unique_ids() -> None:
    assert len(TASKS) >= 100
    assert len({t.task_id for t in TASKS}) == len(TASKS)


@pytest.mark.parametrize("task", TASKS, ids=lambda t: t.task_id)
def test_each_task_is_checkable(task: Task) -> None:
    assert all(check(c, task.reference).passed for c in task.checks), "the reference passes"
    assert not all(check(c, task.draft).passed for c in task.checks), "the draft misses"
    found = {(c.kind, c.relation, c.count, c.text.lower()) for c in stated_in(task.prompt)}
    declared = {(c.kind, c.relation, c.count, c.text.lower()) for c in task.checks}
    assert declared <= found, "the prompt states what the verifier checks"


def test_a_task_s_declared_constraints_are_its_checks_as_the_client_sends_them() -> None:
    from agents.constraints import from_declared

    for task in tasks():
        declared = task.declared()
        assert all(d.source == "client" for d in declared)
        assert [from_declared(d).kind for d in declared] == [c.kind for c in task.checks]
        assert [(c.relation, c.count, c.text) for c in map(from_declared, declared)] == [
            (c.relation, c.count, c.text) for c in task.checks
        ]
        assert task.passes(task.reference)
