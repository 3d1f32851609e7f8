"""The project's task set: rule-checkable prompts built from a few facts per topic.

Each task states its constraints in plain English, as a user would, and also declares
them (``checks``) for the verifier, which never reads the prompt. Each carries a
``reference`` answer that meets every constraint and a ``draft``: a first attempt on
topic that misses them, which the scripted runs answer with until a critique says what
to change. Used for CI smoke runs, for choosing prompt variants (never the external
benchmark) and for the demo.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from agents.constraints import Constraint, check, to_declared
from schemas.request_events import Constraint as Declared


@dataclass(frozen=True)
class Task:
    task_id: str
    prompt: str
    checks: tuple[Constraint, ...]
    reference: str = ""
    draft: str = ""
    answer_format: str = "text"
    meta: dict[str, str] = field(default_factory=dict)

    def passes(self, answer: str) -> bool:
        """Every declared check met."""
        return all(check(c, answer).passed for c in self.checks)

    def declared(self) -> tuple[Declared, ...]:
        """The checks as client-declared constraints (arm C+)."""
        return tuple(to_declared(c).model_copy(update={"source": "client"}) for c in self.checks)


_TOPICS: dict[str, tuple[str, str, tuple[str, str, str]]] = {
    # name: (subject, keyword, three facts without commas)
    "eiffel": (
        "the Eiffel Tower",
        "tower",
        (
            "The Eiffel Tower is a wrought iron tower in Paris.",
            "The tower was finished in 1889 for a world fair.",
            "The tower is about 330 metres tall today.",
        ),
    ),
    "nile": (
        "the Nile river",
        "river",
        (
            "The Nile is a long river in northeast Africa.",
            "The river flows north into the Mediterranean Sea.",
            "The river made farming possible in ancient Egypt.",
        ),
    ),
    "bees": (
        "honey bees",
        "hive",
        (
            "Honey bees live together in a hive ruled by one queen.",
            "Worker bees collect nectar and turn it into honey in the hive.",
            "Bees pollinate many of the crops people eat.",
        ),
    ),
    "moon": (
        "the Moon",
        "moon",
        (
            "The Moon is the only natural satellite of the Earth.",
            "The moon takes about 27 days to orbit the Earth.",
            "Its gravity causes the tides in the oceans.",
        ),
    ),
    "kafka": (
        "Apache Kafka",
        "log",
        (
            "Apache Kafka stores streams of records in a partitioned log.",
            "Producers append records to the log and consumers read them in order.",
            "Consumer groups share the partitions of a topic between their members.",
        ),
    ),
    "volcano": (
        "volcanoes",
        "magma",
        (
            "A volcano is an opening where magma reaches the surface of the Earth.",
            "Magma that flows out of a volcano is called lava.",
            "Ash from large eruptions can cool the climate for years.",
        ),
    ),
    "coffee": (
        "coffee",
        "bean",
        (
            "Coffee is brewed from the roasted seeds of the coffee plant.",
            "Each coffee bean is the seed inside a red cherry.",
            "Caffeine in coffee keeps many people awake.",
        ),
    ),
    "penguins": (
        "penguins",
        "ice",
        (
            "Penguins are flightless birds of the southern hemisphere.",
            "Emperor penguins breed on the sea ice of Antarctica.",
            "Penguins use their wings as flippers to swim fast.",
        ),
    ),
    "bread": (
        "baking bread",
        "dough",
        (
            "Bread is baked from a dough of flour and water and yeast.",
            "The dough rises while the yeast makes gas.",
            "A hot oven gives the bread its brown crust.",
        ),
    ),
    "chess": (
        "chess",
        "king",
        (
            "Chess is a board game for two players on 64 squares.",
            "Each player tries to trap the king of the other side.",
            "The queen is the strongest piece on the board.",
        ),
    ),
    "rain": (
        "rain",
        "cloud",
        (
            "Rain falls when water drops in a cloud grow too heavy.",
            "A cloud forms when warm moist air rises and cools.",
            "Rain fills rivers and lakes and waters the crops.",
        ),
    ),
    "bicycle": (
        "bicycles",
        "wheel",
        (
            "A bicycle has two wheels driven by pedals and a chain.",
            "The rider steers the front wheel with the handlebars.",
            "Cycling is a cheap and clean way to travel in cities.",
        ),
    ),
    "piano": (
        "the piano",
        "key",
        (
            "A piano makes sound when hammers strike its strings.",
            "A modern piano has 88 keys in black and white.",
            "Each key moves a hammer inside the piano.",
        ),
    ),
}


def _sentences(facts: tuple[str, ...]) -> str:
    return " ".join(facts)


def _templates(name: str, subject: str, kw: str, facts: tuple[str, str, str]) -> list[Task]:
    f0, f1, f2 = facts
    short = " ".join(f0.split()[:10]).rstrip(".") + "."
    return [
        Task(
            f"{name}-words",
            f"Describe {subject} in at most 12 words.",
            (Constraint("words", "at_most", 12),),
            reference=short,
            draft=_sentences(facts),
        ),
        Task(
            f"{name}-sentences",
            f"Explain {subject} in exactly two sentences.",
            (Constraint("sentences", "exactly", 2),),
            reference=f"{f0} {f1}",
            draft=_sentences(facts),
        ),
        Task(
            f"{name}-bullets",
            f"List facts about {subject}. Use exactly 3 bullet points.",
            (Constraint("bullets", "exactly", 3),),
            reference=f"- {f0}\n- {f1}\n- {f2}",
            draft=_sentences(facts),
        ),
        Task(
            f"{name}-ends",
            f'Tell me about {subject}. End your response with "Any other questions?"',
            (Constraint("ends_with", text="Any other questions?"),),
            reference=f"{f0} {f1} Any other questions?",
            draft=f"{f0} {f1}",
        ),
        Task(
            f"{name}-lowercase",
            f"Describe {subject} in all lowercase letters.",
            (Constraint("lowercase"),),
            reference=f"{f0} {f1}".lower(),
            draft=f"{f0} {f1}",
        ),
        Task(
            f"{name}-keyword",
            f"Write about {subject} and include the keyword '{kw}' at least 3 times.",
            (Constraint("keyword", "at_least", 3, kw),),
            reference=f"{f0} {f1} {f2} This {kw} fact and that {kw} fact and one more {kw}.",
            draft=f0,
        ),
        Task(
            f"{name}-json",
            f"Give three facts about {subject} as JSON.",
            (Constraint("json"),),
            reference=json.dumps({"facts": list(facts)}),
            draft=_sentences(facts),
        ),
        Task(
            f"{name}-commas",
            f"Describe {subject} without commas.",
            (Constraint("no_commas"),),
            reference=f"{f0} {f1}",
            draft=f"{f0.rstrip('.')}, and {f1[0].lower()}{f1[1:]}",
        ),
    ]


def tasks() -> list[Task]:
    """Every task of the project set, in a stable order (104 tasks)."""
    out: list[Task] = []
    for name, (subject, kw, facts) in _TOPICS.items():
        out += _templates(name, subject, kw, facts)
    return out
