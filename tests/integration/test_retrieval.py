"""The retrieval specialist on a real broker: a worker with a knowledge folder answers a
retrieval task from the tasks topic with the passages it found, and shows them to the
model (a fake OpenAI-compatible service on loopback that records what it was sent)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from agents.knowledge import retrieval_query
from agents.ports import ChatMessage
from agents.prompts import render_passages, sampling_seed
from agents.router import classify, complexity, plan
from connectors import kafka_connect
from connectors.embeddings import HashingEmbedder
from connectors.knowledge_files import load_knowledge
from schemas import topics
from schemas.codec import Codec
from schemas.request_events import Passage, SpecialistAnswered, TaskAssigned
from tests.fake_model_service import FakeModelService, Received, completion
from tests.integration.harness import Pipeline, by_request, covers, pipeline, read_until

pytestmark = pytest.mark.integration

SAMPLE = Path(__file__).resolve().parents[2] / "deploy" / "knowledge"
TOP_K, MIN_SCORE = 3, 0.2
PROMPT = (
    "Answer the following:\n1. What is a partition?\n2. Why are offsets kept per partition?\n"
    "3. How does a consumer group rebalance?"
)
UNRELATED = "Request: Quokka xylophone zeppelin?"


def facts_instruction() -> str:
    """The instruction the router gives the retrieval subtask of ``PROMPT``."""
    planned = plan(
        PROMPT, task_class=classify(PROMPT), complexity=complexity(PROMPT), session_context=()
    )
    (facts,) = [s for s in planned.subtasks if s.specialist == "retrieval"]
    return facts.instruction


def expected(instruction: str) -> tuple[Passage, ...]:
    """What the worker must find: the same files, embedder and settings, in this process."""
    store = load_knowledge(SAMPLE, HashingEmbedder())
    return store.search(retrieval_query(instruction), k=TOP_K, min_score=MIN_SCORE)


def task(request_id: str, specialist: str, instruction: str) -> TaskAssigned:
    return TaskAssigned(
        event_id=f"{request_id}-task",
        request_id=request_id,
        occurred_at=datetime.now(tz=UTC),
        task_id=f"{request_id}/facts/1",
        subtask="facts",
        round=1,
        specialist=specialist,
        deployment="openai",
        instruction=instruction,
        # Tells the model requests apart: each names its task.
        system_prompt=f"You gather facts. ({request_id})",
    )


async def send_tasks(p: Pipeline, tasks: list[TaskAssigned]) -> None:
    codec = Codec()
    producer = kafka_connect.producer(p.kafka, acks="all")
    await kafka_connect.start(producer, p.kafka)
    try:
        for t in tasks:
            await producer.send_and_wait(
                p.topic(topics.TASKS), key=t.request_id.encode(), value=codec.encode(t)
            )
    finally:
        await producer.stop()


def request_of(service: FakeModelService, request_id: str) -> list[str]:
    """The message texts of the one model request made for ``request_id``'s task."""
    made: list[Received] = [
        r for r in service.received if f"({request_id})" in r.body["messages"][0]["content"]
    ]
    assert len(made) == 1, f"{len(made)} model requests for {request_id}"
    return [m["content"] for m in made[0].body["messages"]]


async def test_a_retrieval_task_is_answered_with_the_passages_it_showed_the_model(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    instruction = facts_instruction()
    want = expected(instruction)
    assert want, "the sample knowledge covers the request"
    assert expected(UNRELATED) == (), "nothing in the sample is near the unrelated request"
    retrieval, general, nothing = "rq-retrieval", "rq-general", "rq-nothing"
    async with FakeModelService(completion("A partition is an ordered log [1].")) as service:
        with pipeline(kafka_bootstrap, tmp_path) as p:
            p.start_served_worker(
                service.base_url,
                GUARDIAN_KNOWLEDGE_DIR=str(SAMPLE),
                GUARDIAN_KNOWLEDGE_TOP_K=str(TOP_K),
                GUARDIAN_KNOWLEDGE_MIN_SCORE=str(MIN_SCORE),
            )
            await send_tasks(
                p,
                [
                    task(retrieval, "retrieval", instruction),
                    task(general, "general", instruction),
                    task(nothing, "retrieval", UNRELATED),
                ],
            )
            ids = {retrieval, general, nothing}
            answers = by_request(
                await read_until(p, topics.ANSWERS, SpecialistAnswered, covers(ids), timeout_s=120)
            )
            assert ids <= answers.keys(), p.log()

        found = answers[retrieval][0]
        assert found.status == "ok"
        assert found.content == "A partition is an ordered log [1]."
        assert found.passages == want
        assert all(p.source.startswith("kafka.md#") for p in found.passages)
        scores = [p.score for p in found.passages]
        assert scores == sorted(scores, reverse=True)
        assert min(scores) >= MIN_SCORE
        # Each call samples with the seed of its messages and round, so the same task
        # asked again (a retry, a redelivery, another arm of an evaluation) draws alike.
        for made in service.received:
            messages = [ChatMessage(**m) for m in made.body["messages"]]
            assert made.body["seed"] == sampling_seed(messages, 1)
        sent = request_of(service, retrieval)
        assert sent[1] == render_passages(want)
        assert sent[2] == instruction
        assert all(f"({p.source}) {p.text}" in sent[1] for p in want)

        # Another specialist's task with the same instruction is not given passages.
        assert answers[general][0].passages == ()
        assert request_of(service, general)[1:] == [instruction]

        # A retrieval task with nothing relevant is still answered, without sources.
        assert (answers[nothing][0].status, answers[nothing][0].passages) == ("ok", ())
        assert request_of(service, nothing)[1:] == [UNRELATED]
