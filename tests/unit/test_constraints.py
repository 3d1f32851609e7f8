"""Verifiable constraints: each kind checked exactly on passing and failing answers,
found in plain English (and not found where a prompt states none), with critiques that
name the numbers."""

from __future__ import annotations

import string

import pytest

from agents.constraints import (
    Constraint,
    banned_characters,
    bullet_count,
    check,
    critique,
    paragraph_count,
    sentence_count,
    stated_in,
    word_count,
)

TWO_PARAGRAPHS = "Trains run on rails.\n\nThey carry people and goods."
BULLETS = "Planets:\n- Mercury\n- Venus\n* Earth\n1. Mars"


@pytest.mark.parametrize(
    ("constraint", "answer", "passed"),
    [
        (Constraint("words", "at_most", 5), "one two three four five", True),
        (Constraint("words", "at_most", 5), "one two three four five six", False),
        (Constraint("words", "at_least", 3), "one two three", True),
        (Constraint("words", "at_least", 3), "one two", False),
        (Constraint("words", "exactly", 2), "well-known fact", True),
        (Constraint("sentences", "exactly", 2), "It rains. It pours!", True),
        (Constraint("sentences", "exactly", 2), "It rains. It pours. It stops.", False),
        (Constraint("sentences", "exactly", 1), "It rains", True),
        (Constraint("paragraphs", "exactly", 2), TWO_PARAGRAPHS, True),
        (Constraint("paragraphs", "exactly", 2), "One paragraph only.", False),
        (Constraint("bullets", "exactly", 4), BULLETS, True),
        (Constraint("bullets", "exactly", 3), BULLETS, False),
        (Constraint("keyword", "at_least", 2, "moon"), "The moon, the Moon.", True),
        (Constraint("keyword", "at_least", 2, "moon"), "The moon and moonlight.", False),
        (Constraint("keyword", "at_most", 1, "very"), "very good", True),
        (Constraint("forbidden", text="very"), "quite good", True),
        (Constraint("forbidden", text="very"), "Very good", False),
        (Constraint("starts_with", text="Dear friend"), '"Dear friend, hello."', True),
        (Constraint("starts_with", text="Dear friend"), "Hello, dear friend.", False),
        (Constraint("ends_with", text="Any other questions?"), "Done. any other questions?", True),
        (Constraint("ends_with", text="Any other questions?"), "Any other questions? Bye.", False),
        (Constraint("json"), '{"Spain": "Madrid"}', True),
        (Constraint("json"), "Spain: Madrid", False),
        (Constraint("lowercase"), "all quiet here", True),
        (Constraint("lowercase"), "All quiet here", False),
        (Constraint("uppercase"), "LOUD AND CLEAR", True),
        (Constraint("uppercase"), "LOUD and clear", False),
        (Constraint("no_commas"), "No commas here.", True),
        (Constraint("no_commas"), "One, two.", False),
        (Constraint("regex", text=r"\b\d{4}\b"), "Founded in 1889.", True),
        (Constraint("regex", text=r"\b\d{4}\b"), "Founded long ago.", False),
    ],
)
def test_each_kind_is_checked_exactly(constraint: Constraint, answer: str, passed: bool) -> None:
    assert check(constraint, answer).passed is passed


def test_counts() -> None:
    assert word_count("It's a well-known fact, isn't it?") == 6
    assert sentence_count("One. Two! Three? Four") == 4
    assert sentence_count("   ") == 0
    assert paragraph_count(TWO_PARAGRAPHS + "\n\n\n") == 2
    assert bullet_count(BULLETS) == 4


@pytest.mark.parametrize(
    ("prompt", "found"),
    [
        ("Describe Paris in at most 50 words.", ["at most 50 words"]),
        ("Describe Paris in no more than fifty words.", ["at most 50 words"]),
        ("Write more than 100 words on trains.", ["at least 101 words"]),
        ("Answer in fewer than 20 words.", ["at most 19 words"]),
        ("Write a 300-word essay about trains.", ["at most 300 words"]),
        ("Explain gravity in two sentences.", ["exactly 2 sentences"]),
        ("Use exactly 3 bullet points.", ["exactly 3 bullet points"]),
        ("Write exactly 2 paragraphs.", ["exactly 2 paragraphs"]),
        ("Give the capital cities of Spain and Italy as JSON.", ["valid JSON"]),
        ("List three fruits in JSON format.", ["valid JSON"]),
        ("Respond in JSON with the keys a and b.", ["valid JSON"]),
        ("Include the keyword 'moon' at least twice.", ["'moon' at least 2 times"]),
        ('Use the word "tide".', ["'tide' at least 1 times"]),
        ("Do not use the word 'very'.", ["no 'very'"]),
        (
            'End your response with "Is there anything else?"',
            ["ends with 'Is there anything else?'"],
        ),
        ("Start your answer with 'Dear friend'.", ["starts with 'Dear friend'"]),
        ("Answer in all lowercase letters, without commas.", ["all lowercase", "no commas"]),
        ("Reply in all capital letters.", ["all uppercase"]),
        ("Write 3 paragraphs, each with 2 sentences.", ["exactly 3 paragraphs"]),
        ("Write between 100 and 150 words on trains.", ["at least 100 words", "at most 150 words"]),
        ("Answer in 3 to 5 sentences.", ["at least 3 sentences", "at most 5 sentences"]),
        ("A 50-80 word summary, please.", ["at least 50 words", "at most 80 words"]),
        (
            "Use from two to four bullet points.",
            ["at least 2 bullet points", "at most 4 bullet points"],
        ),
        ("Summarise it in 2 sentences; each sentence needs 8 words.", ["exactly 2 sentences"]),
    ],
)
def test_constraints_stated_in_plain_english_are_found(prompt: str, found: list[str]) -> None:
    assert [c.describe() for c in stated_in(prompt)] == found
    assert all(c.source == "prompt" for c in stated_in(prompt))


@pytest.mark.parametrize(
    ("kinds", "banned"),
    [
        ((), ""),
        (("no_commas",), ","),
        (("lowercase",), string.ascii_uppercase),
        (("uppercase", "no_commas"), "," + string.ascii_lowercase),
        (("lowercase", "uppercase"), ""),  # contradictory: left to the exact checks
        (("words", "ends_with"), ""),
    ],
)
def test_decoding_can_rule_out_the_characters_a_constraint_forbids(
    kinds: tuple[str, ...], banned: str
) -> None:
    found = [Constraint(kind=k, relation="at_most", count=50, text="x") for k in kinds]  # type: ignore[arg-type]
    assert banned_characters(found) == banned
    # Each banned character alone breaks a constraint it comes from.
    assert all(any(not check(c, ch).passed for c in found) for ch in banned)


@pytest.mark.parametrize(
    "prompt",
    [
        "What is the capital of France?",
        "What do the two words 'carpe diem' mean?",
        "Explain in a few words why the sky is blue.",
        "How many sentences does the Gettysburg Address have?",
        "Which of these three paragraphs is the clearest?",
        "Why do people say the JSON format is popular?",
        "How do I parse dates in JSON?",
        # Counts of something other than the answer's length.
        "No two consecutive words may start with the same letter.",
        "Each sentence must contain exactly one more word than the previous one.",
        "Write about rain in sentences that are at most 12 words long.",
        "Describe a forest using at least 40 unique words.",
        "Every paragraph should have exactly 3 sentences.",
        "Write a poem where each line has 5 words.",
        "Use at most 10 words per sentence.",
        "Begin with two words that rhyme.",
        "Each paragraph should have between 3 and 5 sentences.",
        "Write about 5 to 3 sentences.",
    ],
)
def test_a_prompt_stating_no_constraint_gets_none(prompt: str) -> None:
    assert stated_in(prompt) == ()


@pytest.mark.parametrize(
    ("constraint", "answer", "says"),
    [
        (
            Constraint("words", "at_most", 50),
            " ".join(["word"] * 58),
            "58 words; at most 50 words are allowed: cut 8 or more.",
        ),
        (
            Constraint("words", "at_least", 100),
            " ".join(["word"] * 40),
            "40 words; at least 100 words are required: add 60 or more.",
        ),
        (
            Constraint("bullets", "exactly", 3),
            BULLETS,
            "4 bullet points; exactly 3 bullet points are required: cut 1.",
        ),
        (
            Constraint("keyword", "at_least", 2, "moon"),
            "The moon.",
            "'moon' 1 times; at least 2 times is required: add 1 or more.",
        ),
        (
            Constraint("ends_with", text="Any questions?"),
            "That is all.",
            "The answer must be ends with 'Any questions?' (ends with 'That is all.'): "
            "end with exactly 'Any questions?'.",
        ),
        (Constraint("no_commas"), "a, b, c", "(2 commas): remove every comma."),
    ],
)
def test_the_critique_names_the_numbers(constraint: Constraint, answer: str, says: str) -> None:
    checked = check(constraint, answer)
    assert not checked.passed
    assert says in critique([checked])
