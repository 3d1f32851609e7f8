"""Prompt building: a task becomes the chat messages a specialist sends (Self-Refine
style when a critique of a previous attempt is present)."""

from __future__ import annotations

from agents.ports import ChatMessage
from schemas.request_events import TaskAssigned

_FORMAT_RULES = {
    "text": "",
    "json": "Answer with one valid JSON value and nothing else.",
    "markdown": "Format the answer as Markdown.",
}


def build_messages(task: TaskAssigned) -> list[ChatMessage]:
    system = task.system_prompt
    rule = _FORMAT_RULES.get(task.answer_format, "")
    if rule:
        system = f"{system}\n{rule}"
    messages = [ChatMessage(role="system", content=system)]
    for turn in task.context:
        messages.append(ChatMessage(role="user", content=f"Context: {turn}"))
    messages.append(ChatMessage(role="user", content=task.instruction))
    if task.critique and task.previous_attempt is not None:
        messages.append(ChatMessage(role="assistant", content=task.previous_attempt))
        messages.append(ChatMessage(role="user", content=refinement_request(task.critique)))
    elif task.critique:
        messages.append(ChatMessage(role="user", content=f"Note: {task.critique}"))
    return messages


def refinement_request(critique: str) -> str:
    return (
        "A reviewer checked your answer and found these problems:\n"
        f"{critique}\n"
        "Write an improved answer to the original question that fixes them. "
        "Give only the answer."
    )
