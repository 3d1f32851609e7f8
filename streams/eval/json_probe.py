"""The JSON re-ask layouts on the embedded model, measured directly (no pipeline): after a
prose first answer fails the JSON format check, how often does a JSON-constrained re-ask
give valid JSON about the question? ``guardian eval-json``.

Layouts (the same critique, JSON-constrained decoding, temperatures 0.2 to 0.65):

- ``critique-last``: question, previous answer, then the refinement request with the
  critique (the layout of every other re-ask);
- ``question-last``: question, previous answer, then the critique and the question
  again (what a re-ask under constrained decoding sends).
"""

from __future__ import annotations

import json

from agents.ports import ChatMessage
from agents.prompts import refinement_request
from connectors.llm_embedded import EmbeddedLLM, EmbeddedModelSettings

QUESTION = "Give the capital cities of Spain and Italy as JSON."
SYSTEM = (
    "You are a careful assistant. Answer the user's question directly, accurately and "
    "completely, in plain language.\nAnswer with one valid JSON value and nothing else."
)
PREVIOUS = "The capital cities of Spain and Italy are:\n\n- Madrid, Spain\n- Florence, Italy"
CRITIQUE = (
    "The answer is not valid JSON (Expecting value: line 1 column 1 (char 0)); answer with "
    "valid JSON only."
)
ON_TOPIC = ("Spain", "Italy", "Madrid", "Rome")
TEMPERATURES = (0.2, 0.35, 0.5, 0.65)


def layouts() -> dict[str, list[ChatMessage]]:
    head = [
        ChatMessage(role="system", content=SYSTEM),
        ChatMessage(role="user", content=QUESTION),
        ChatMessage(role="assistant", content=PREVIOUS),
    ]
    return {
        "critique-last": [*head, ChatMessage(role="user", content=refinement_request(CRITIQUE))],
        "question-last": [*head, ChatMessage(role="user", content=f"{CRITIQUE}\n\n{QUESTION}")],
    }


def judged(content: str) -> tuple[bool, bool]:
    """(valid JSON, on topic)."""
    try:
        json.loads(content)
        valid = True
    except ValueError:
        valid = False
    return valid, any(word in content for word in ON_TOPIC)


async def probe(per_temperature: int, max_tokens: int) -> list[str]:
    llm = EmbeddedLLM(EmbeddedModelSettings())
    lines = []
    for name, messages in layouts().items():
        valid = topic = both = 0
        for temperature in TEMPERATURES:
            for _ in range(per_temperature):
                done = await llm.complete(
                    messages, temperature=temperature, max_tokens=max_tokens, json_mode=True
                )
                v, t = judged(done.content)
                valid, topic, both = valid + v, topic + t, both + (v and t)
        n = per_temperature * len(TEMPERATURES)
        lines.append(f"{name}: valid JSON {valid}/{n}, on topic {topic}/{n}, both {both}/{n}")
    return lines
