"""Sessions on a real broker: a follow-up sees its session's earlier turns (in its task
and in what the model is sent); another session does not; the turns are on the log."""

from __future__ import annotations

from pathlib import Path

import pytest

from connectors.client import GuardianClient
from schemas import topics
from schemas.request_events import ContextProvided, SessionTurn, TaskAssigned
from tests.fake_model_service import FakeModelService, completion
from tests.integration.harness import pipeline, read_until
from tests.integration.test_pipeline import wait_ready

pytestmark = pytest.mark.integration

FIRST = "My favourite colour is teal and my cat is called Miso."
ANSWER = "Noted: your favourite colour is teal and your cat is called Miso."
FOLLOW_UP = "What is my favourite colour?"


def sent_for(service: FakeModelService, instruction: str) -> list[list[str]]:
    """The message texts of every model request whose last message is ``instruction``."""
    return [
        [m["content"] for m in r.body["messages"]]
        for r in service.received
        if r.body["messages"][-1]["content"] == instruction
    ]


@pytest.mark.timeout(300)
async def test_a_follow_up_sees_its_sessions_turns_and_no_other_session_does(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    async with FakeModelService(completion(ANSWER)) as service:
        with pipeline(kafka_bootstrap, tmp_path) as p:
            p.start_served_worker(service.base_url, GUARDIAN_REFINE_MAX_ROUNDS="1")
            await wait_ready(p)
            async with GuardianClient(p.kafka) as client:
                first = await client.ask(FIRST, session_id="s-ada")
                follow = await client.ask(FOLLOW_UP, session_id="s-ada")
                stranger = await client.ask(FOLLOW_UP, session_id="s-bob")
                alone = await client.ask(FOLLOW_UP)
            ids = {first.request_id, follow.request_id, stranger.request_id, alone.request_id}
            tasks = {
                t.request_id: t
                for t in await read_until(
                    p, topics.TASKS, TaskAssigned, lambda _: True, timeout_s=5
                )
                if t.request_id in ids
            }
            contexts = {
                c.request_id: c
                for c in await read_until(
                    p, topics.CONTEXTS, ContextProvided, lambda _: True, timeout_s=5
                )
            }
            turns = await read_until(p, topics.SESSIONS, SessionTurn, lambda _: True, timeout_s=5)

    assert {r.status for r in (first, follow, stranger, alone)} <= {"passed", "failed"}
    assert first.session_id == follow.session_id == "s-ada"
    earlier = f"User: {FIRST}\nAssistant: {ANSWER}"
    assert tasks[first.request_id].context == ()
    assert tasks[follow.request_id].context == (earlier,)
    assert tasks[stranger.request_id].context == ()
    assert tasks[alone.request_id].context == ()
    assert (contexts[follow.request_id].turns, contexts[follow.request_id].session_id) == (
        1,
        "s-ada",
    )
    assert alone.request_id not in contexts, "a request without a session asks for no context"

    # What the model was sent: the earlier turn only for the follow-up in the same session.
    follow_sent, stranger_sent, alone_sent = sent_for(service, FOLLOW_UP)
    assert f"Context: {earlier}" in follow_sent
    assert not any(FIRST in m for m in stranger_sent + alone_sent)

    # The conversation log: each session's turns in order, keyed by session.
    ada = [(t.role, t.request_id) for t in turns if t.session_id == "s-ada"]
    assert ada == [
        ("user", first.request_id),
        ("assistant", first.request_id),
        ("user", follow.request_id),
        ("assistant", follow.request_id),
    ]
    assert [t.role for t in turns if t.session_id == "s-bob"] == ["user", "assistant"]
