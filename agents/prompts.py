"""Prompt building: a task becomes the chat messages a specialist sends (Self-Refine
style when a critique of a previous attempt is present), with any retrieved passages
as numbered sources."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from agents.constraints import answer_constraints, banned_characters
from agents.ports import ChatMessage
from schemas.request_events import Passage, TaskAssigned

_FORMAT_RULES = {
    "text": "",
    "json": "Answer with one valid JSON value and nothing else.",
    "markdown": "Format the answer as Markdown.",
}


def build_messages(task: TaskAssigned, passages: Sequence[Passage] = ()) -> list[ChatMessage]:
    """System prompt, context turns, the sources (if any), the instruction, then the
    previous attempt and its critique on a later round; a re-ask decoded as JSON ends on
    the instruction."""
    system = task.system_prompt
    rule = _FORMAT_RULES.get(task.answer_format, "")
    if rule:
        system = f"{system}\n{rule}"
    messages = [ChatMessage(role="system", content=system)]
    for turn in task.context:
        messages.append(ChatMessage(role="user", content=f"Context: {turn}"))
    if passages:
        messages.append(ChatMessage(role="user", content=render_passages(passages)))
    # A re-ask decoded as JSON ends on the question itself: with the critique last, a
    # small model writes JSON about the critique, not the question.
    as_json = task.critique is not None and decoded_as_json(task)
    if task.critique and task.previous_attempt is None and as_json:
        messages.append(ChatMessage(role="user", content=f"Note: {task.critique}"))
    messages.append(ChatMessage(role="user", content=task.instruction))
    if task.critique and task.previous_attempt is not None:
        messages.append(ChatMessage(role="assistant", content=task.previous_attempt))
        last = f"{task.critique}\n\n{task.instruction}" if as_json else None
        messages.append(ChatMessage(role="user", content=last or refinement_request(task.critique)))
    elif task.critique and not as_json:
        messages.append(ChatMessage(role="user", content=f"Note: {task.critique}"))
    return messages


def sampling_seed(messages: Sequence[ChatMessage], round_: int) -> int:
    """The seed a model samples ``messages`` with at ``round_``: the same messages at the
    same round draw the same answer on any worker, on a retry or a redelivery, and in
    every arm of an evaluation (a single shot and a refinement's first round ask alike);
    a later round of the same messages (resampling) draws afresh."""
    digest = hashlib.blake2b(digest_size=4, person=b"guardian-seed")
    for m in messages:
        digest.update(m.role.encode())
        digest.update(b"\0")
        digest.update(m.content.encode())
        digest.update(b"\0")
    digest.update(str(round_).encode())
    return int.from_bytes(digest.digest(), "big") & 0x7FFFFFFF


def refinement_request(critique: str) -> str:
    return (
        "A reviewer checked your answer and found these problems:\n"
        f"{critique}\n"
        "Write an improved answer to the original question that fixes them. "
        "Give only the answer."
    )


def render_passages(passages: Sequence[Passage]) -> str:
    """The passages as numbered sources, in the order given (best match first)."""
    lines = [
        "Sources from the knowledge base, best match first. Use them where they are "
        "relevant and cite them by number, like [1]."
    ]
    lines += [f"[{n}] ({p.source}) {p.text}" for n, p in enumerate(passages, start=1)]
    return "\n".join(lines)


def decoded_as_json(task: TaskAssigned) -> bool:
    """Whether ``task``'s answer is decoded under a JSON grammar: after a JSON answer
    failed on its format, under a declared schema, and from the first round when the
    answer's constraints (declared, or stated in the prompt: "as JSON") ask for JSON."""
    if task.output_constraint == "json" or json_schema_of(task) is not None:
        return True
    found = answer_constraints(task.subtask, task.constraints, task.instruction)
    return any(c.kind == "json" for c in found)


def banned_characters_of(task: TaskAssigned) -> str:
    """The characters decoding may rule out for ``task``'s answer: those its constraints
    (declared or stated in its prompt) forbid, on a subtask whose answer becomes the
    response; none when it is decoded as JSON, whose grammar applies instead."""
    if decoded_as_json(task):
        return ""
    return banned_characters(answer_constraints(task.subtask, task.constraints, task.instruction))


def json_schema_of(task: TaskAssigned) -> str | None:
    """The JSON Schema a JSON answer must match, when the request declared one: decoding
    is then constrained to it from the first round."""
    if task.answer_format != "json":
        return None
    return next(
        (c.json_schema for c in task.constraints if c.kind == "json" and c.json_schema), None
    )
