"""Constraints through the real pipeline: declared on the request, carried on the tasks
and answers, checked by the guardian, named in the critique, met on the re-ask."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from connectors.client import GuardianClient
from schemas import topics
from schemas.request_events import (
    Constraint,
    ResponseDelivered,
    SpecialistAnswered,
    TaskAssigned,
    VerdictIssued,
)
from tests.integration.harness import by_request, covers, pipeline, read_until
from tests.integration.test_pipeline import wait_ready

pytestmark = pytest.mark.integration

QUESTION = "What is the boiling point of water at sea level?"
LONG = "Water boils at 100 degrees Celsius, or 212 degrees Fahrenheit, at sea level."
SHORT = "Water boils at 100 degrees Celsius at sea level."
SCHEMA = {"type": "object", "required": ["boiling_point_c"]}
WRONG_JSON = json.dumps({"answer": SHORT})
RIGHT_JSON = json.dumps({"boiling_point_c": 100, "answer": SHORT})


async def test_declared_constraints_travel_are_critiqued_with_numbers_and_met_on_the_re_ask(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    declared = [
        Constraint(kind="words", relation="at_most", count=10),
        Constraint(kind="forbidden", text="Fahrenheit"),
    ]
    response_format = json.dumps(
        {"type": "json_schema", "json_schema": {"name": "boiling", "schema": SCHEMA}}
    )
    with pipeline(kafka_bootstrap, tmp_path) as p:
        script = p.write_script(
            {
                "words": [{"answer": LONG}, {"answer": SHORT}],
                "schema": [{"answer": WRONG_JSON}, {"answer": RIGHT_JSON}],
            }
        )
        worker = p.start_worker(
            GUARDIAN_MODEL_BACKEND="scripted", GUARDIAN_MODEL_SCRIPT_PATH=str(script)
        )
        await wait_ready(p)
        async with GuardianClient(p.kafka) as client:
            words = await client.submit(f"[[script:words]] {QUESTION}", constraints=declared)
            schema = await client.submit(
                f"[[script:schema]] {QUESTION}", response_format=response_format
            )
            bad = await client.submit(
                QUESTION, constraints=[Constraint(kind="regex", text="(unclosed")]
            )
        ids = {words.request_id, schema.request_id, bad.request_id}
        responses = await read_until(
            p, topics.RESPONSES, ResponseDelivered, covers(ids), timeout_s=120
        )
        mine = {words.request_id, schema.request_id}
        tasks = await read_until(p, topics.TASKS, TaskAssigned, lambda f: len(f) >= 4, timeout_s=30)
        answers = await read_until(
            p, topics.ANSWERS, SpecialistAnswered, lambda f: len(f) >= 4, timeout_s=30
        )
        verdicts = await read_until(
            p, topics.VERDICTS, VerdictIssued, lambda f: len(f) >= 4, timeout_s=30
        )
        assert worker.poll() is None, p.log()
    final = {rid: rs[0] for rid, rs in by_request(responses).items() if rid in ids}
    (rejected, kept, json_kept) = (
        final[bad.request_id],
        final[words.request_id],
        final[schema.request_id],
    )
    assert (rejected.status, rejected.reason_code) == ("rejected", "bad_constraint")
    assert rejected.reason is not None
    assert "constraints[0] (regex)" in rejected.reason
    assert (kept.status, kept.rounds, kept.content) == ("passed", 2, SHORT)
    assert (json_kept.status, json_kept.rounds, json_kept.content) == ("passed", 2, RIGHT_JSON)

    by_round = {(t.request_id, t.round): t for t in tasks if t.request_id in mine}
    first, second = by_round[(words.request_id, 1)], by_round[(words.request_id, 2)]
    assert first.constraints == tuple(declared)
    assert second.critique is not None
    assert "13 words; at most 10 words are allowed: cut 3 or more" in second.critique
    assert "Fahrenheit" in second.critique
    assert by_round[(schema.request_id, 1)].answer_format == "json"
    (carried,) = by_round[(schema.request_id, 1)].constraints
    assert carried.kind == "json"
    assert json.loads(carried.json_schema or "{}") == SCHEMA
    schema_critique = by_round[(schema.request_id, 2)].critique or ""
    assert "does not match the schema" in schema_critique
    assert "boiling_point_c" in schema_critique
    assert all(
        a.constraints == by_round[(a.request_id, a.round)].constraints
        for a in answers
        if a.request_id in mine
    )
    gates = {
        (v.request_id, v.round): next(s for s in v.scores if s.guardian == "constraints")
        for v in verdicts
        if v.request_id in mine
    }
    assert not gates[(words.request_id, 1)].passed
    assert "(client)" in gates[(words.request_id, 1)].detail
    assert gates[(words.request_id, 2)].passed
    assert gates[(schema.request_id, 2)].passed
