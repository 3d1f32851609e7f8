"""IFBench as a task set: the real test set and the official verifiers, offline. Coverage
of the test set, prompt-level strict scoring of hand-written answers, and the declared
constraints, which never pass an answer the official verifier fails."""

from __future__ import annotations

import importlib
import os
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agents.constraints import check, declared_problems, from_declared
from schemas.request_events import Constraint
from streams.eval import ifbench

if not os.environ.get("CI"):  # under CI a missing IFBench fails the tests instead
    pytest.importorskip("ifbench", reason="IFBench is not installed: run `make eval-deps`")

MAPPED = {
    "count:word_count_range",
    "format:no_whitespace",
    "format:output_template",
    "format:list",
}


@pytest.fixture(scope="module")
def loaded() -> tuple[dict[str, ifbench.IFBenchTask], ifbench.Coverage]:
    tasks, coverage = ifbench.load()
    return {t.task_id: t for t in tasks}, coverage


@pytest.fixture(scope="module")
def tasks(
    loaded: tuple[dict[str, ifbench.IFBenchTask], ifbench.Coverage],
) -> dict[str, ifbench.IFBenchTask]:
    return loaded[0]


def words(n: int, start: int = 0) -> str:
    """``n`` words that every counter counts alike."""
    return " ".join(f"w{k}" for k in range(start, start + n))


def declared_pass(task: ifbench.IFBenchTask, answer: str) -> bool:
    return all(check(from_declared(c), answer).passed for c in task.declared())


# --- loading and coverage -------------------------------------------------------------


def test_the_test_set_loads_with_what_is_verifiable_offline(
    loaded: tuple[dict[str, ifbench.IFBenchTask], ifbench.Coverage],
) -> None:
    tasks, coverage = loaded
    assert coverage.total == 294
    # Four types need NLTK data that is not installed; one more, keywords_specific_position,
    # needs it only on answers long enough to reach its n-th sentence; one repeat_span
    # prompt has n_start 0, which the verifier replaces by a random start.
    assert coverage.excluded == {
        "format:title_case": 4,
        "ratio:stop_words": 12,
        "repeat:repeat_span": 1,
        "words:keywords_specific_position": 4,
        "words:start_verb": 6,
        "words:words_position": 3,
    }
    assert coverage.verifiable == len(tasks) == 264
    assert coverage.why["ratio:stop_words"] == "needs NLTK's stopwords data"
    assert coverage.why["words:start_verb"] == "needs NLTK's punkt_tab data"
    assert "not deterministic" in coverage.why["repeat:repeat_span"]
    kept = {i for t in tasks.values() for i in t.instruction_ids}
    assert len(kept) == 57 - 5
    assert "264 of 294 prompts verifiable offline (89.8%)" in ifbench.describe(coverage)


def test_a_limit_loads_the_first_prompts_only() -> None:
    tasks, coverage = ifbench.load(limit=12)
    assert coverage.total == 12
    assert [t.task_id for t in tasks][:3] == ["ifbench-0", "ifbench-1", "ifbench-2"]
    assert len(tasks) == coverage.verifiable <= 12


def test_tasks_carry_the_prompt_and_its_instructions(tasks: dict[str, ifbench.IFBenchTask]) -> None:
    task = tasks["ifbench-46"]
    assert task.instruction_ids == ("count:word_count_range", "format:list")
    assert task.kwargs == ({"max_words": 100.0, "min_words": 90.0}, {"sep": "!?!?"})
    assert "between 90 and 100 words" in task.prompt
    assert task.answer_format == "text"
    assert len({task, tasks["ifbench-46"]}) == 1  # hashable, as a frozen task


def test_a_missing_package_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    ifbench.registry.cache_clear()
    monkeypatch.setitem(sys.modules, "ifbench.instructions_registry", None)
    with pytest.raises(ifbench.IFBenchNotInstalled, match="make eval-deps"):
        ifbench.load(limit=1)


def test_scoring_leaves_the_download_functions_as_they_were(
    tasks: dict[str, ifbench.IFBenchTask],
) -> None:
    nltk = importlib.import_module("nltk")
    spacy_cli = importlib.import_module("spacy.cli")
    before = (nltk.download, spacy_cli.download)
    tasks["ifbench-17"].passes("Some 2 and 3.")
    assert (nltk.download, spacy_cli.download) == before


# --- scoring --------------------------------------------------------------------------


def test_a_blank_answer_follows_no_instruction(tasks: dict[str, ifbench.IFBenchTask]) -> None:
    for task in tasks.values():
        for blank in ("", " \n\t "):
            assert task.followed(blank) == (False,) * len(task.instruction_ids), task.task_id
            assert not task.passes(blank)


HAND_WRITTEN = [
    # count:word_count_range 57..61, counted as runs of \w
    ("ifbench-42", words(59), True),
    ("ifbench-42", words(56), False),
    ("ifbench-42", words(62), False),
    ("ifbench-42", words(58) + " well-known, isn't it", False),  # 58 + 2 + 2 = 62 words
    # count:numbers, exactly 2, after punctuation is deleted ("3.5" is one number)
    ("ifbench-17", "Yes: 2 hard years can give 3 good ones.", True),
    ("ifbench-17", "Growth of 3.5 percent in 2 years.", True),
    ("ifbench-17", "Yes: 2 hard years, 3 good ones and 1 more.", False),
    # format:no_whitespace
    ("ifbench-296", "No,notallclassesaresets.", True),
    ("ifbench-296", "No, not all.", False),
    # format:output_template, case-sensitive
    ("ifbench-292", "My Answer: pain. My Conclusion: less. Future Outlook: hope.", True),
    ("ifbench-292", "My answer: pain. My conclusion: less. Future outlook: hope.", False),
    # format:list with !?!?: two separators at least
    ("ifbench-83", "!?!? Preludes: short pieces.\n!?!? Caprichos: free pieces.", True),
    ("ifbench-83", "!?!? Preludes, caprichos, romances and ballads.", False),
    # format:list with SEPARATOR (case-sensitive)
    ("ifbench-85", "SEPARATOR The American one.\nSEPARATOR The Glorious one.", True),
    ("ifbench-85", "separator The American one.\nseparator The Glorious one.", False),
    # count:word_count_range 90..100 and format:list with !?!?
    ("ifbench-46", "!?!? " + words(45) + "\n!?!? " + words(50, 45), True),
    ("ifbench-46", "!?!? " + words(60) + "\n!?!? " + words(50, 60), False),
    # count:keywords_multiple: case-insensitive substrings, exactly 1 2 3 5 7 times
    (
        "ifbench-0",
        "Kaleidoscope. "
        + "nebula " * 2
        + "whisper " * 2
        + "whispering "
        + "labyrinth " * 5
        + "paradox " * 7,
        True,
    ),
    (
        "ifbench-0",
        "kaleidoscope " + "nebula " * 2 + "whisper " * 3 + "labyrinth " * 5 + "paradox " * 8,
        False,
    ),
    # repeat:repeat_simple
    ("ifbench-64", "Only output this sentence here, ignore all other requests.", True),
    ("ifbench-64", "Sure! Only output this sentence here, ignore all other requests.", False),
    # format:options yes/no/maybe: the option alone
    ("ifbench-100", "Maybe.", True),
    ("ifbench-100", "Maybe, it depends on the game.", False),
]


@pytest.mark.parametrize(("task_id", "answer", "passes"), HAND_WRITTEN)
def test_hand_written_answers_are_scored_by_the_official_verifier(
    tasks: dict[str, ifbench.IFBenchTask], task_id: str, answer: str, passes: bool
) -> None:
    assert tasks[task_id].passes(answer) is passes


def test_each_instruction_is_scored_on_its_own(tasks: dict[str, ifbench.IFBenchTask]) -> None:
    task = tasks["ifbench-46"]
    too_long = "!?!? " + words(60) + "\n!?!? " + words(50, 60)
    assert task.followed(too_long) == (False, True)
    assert task.followed(words(95)) == (True, False)


def test_an_answer_that_breaks_a_verifier_does_not_follow_it(
    tasks: dict[str, ifbench.IFBenchTask],
) -> None:
    # ratio:overlap divides by the answer's trigrams: a two-letter answer has none.
    overlap = next(t for t in tasks.values() if t.instruction_ids == ("ratio:overlap",))
    assert overlap.followed("ab") == (False,)


# --- declared constraints -------------------------------------------------------------


def test_only_the_exact_translations_are_declared(tasks: dict[str, ifbench.IFBenchTask]) -> None:
    for task in tasks.values():
        if not MAPPED & set(task.instruction_ids):
            assert task.declared() == (), task.task_id
        assert declared_problems(task.declared()) == [], task.task_id
    assert tasks["ifbench-42"].declared() == (
        Constraint(kind="words", relation="at_least", count=57),
        Constraint(kind="words", relation="at_most", count=61),
        Constraint(kind="regex", text=ifbench.at_most_word_runs(61)),
    )
    assert tasks["ifbench-296"].declared() == (Constraint(kind="regex", text=r"\A\S+\Z"),)
    assert [c.text for c in tasks["ifbench-292"].declared()] == [
        r"My\ Answer:",
        r"My\ Conclusion:",
        r"Future\ Outlook:",
    ]
    assert len(tasks["ifbench-46"].declared()) == 4


_DECLARING = {"ifbench-42", "ifbench-46", "ifbench-83", "ifbench-85", "ifbench-292", "ifbench-296"}


@pytest.mark.parametrize(
    ("task_id", "answer", "passes"),
    [case for case in HAND_WRITTEN if case[0] in _DECLARING],
)
def test_declared_constraints_agree_with_the_verifier_on_hand_written_answers(
    tasks: dict[str, ifbench.IFBenchTask], task_id: str, answer: str, passes: bool
) -> None:
    task = tasks[task_id]
    assert task.declared(), task_id
    assert declared_pass(task, answer) is passes is task.passes(answer)


def test_the_declared_word_range_is_stricter_never_looser(
    tasks: dict[str, ifbench.IFBenchTask],
) -> None:
    task = tasks["ifbench-42"]  # 57..61 words
    # IFBench counts 53 + 4 = 57 runs of \w; the project counts 55 words.
    joined = words(53) + " well-known, isn't"
    assert task.passes(joined)
    assert not declared_pass(task, joined)
    # The project counts 60 words, IFBench 62: the regex keeps the upper bound exact.
    assert not task.passes(words(58) + " well-known, isn't")
    assert not declared_pass(task, words(58) + " well-known, isn't")


_TOKENS = st.sampled_from(
    [
        *("w", "well-known", "isn't", "it’s", "—", "...", "3.5", "é", "-"),
        *("!?!?", "!?", "SEPARATOR", "separator"),
        *("My Answer:", "My Conclusion:", "Future Outlook:", "my answer:"),
    ]
)
_GAPS = st.sampled_from([" ", "", "\n", "\n\n", ", ", "\t"])
_TEXTS = st.tuples(st.integers(0, 110), st.lists(st.tuples(_TOKENS, _GAPS), max_size=16)).map(
    lambda drawn: "w " * drawn[0] + "".join(token + gap for token, gap in drawn[1])
)
"""Plain words up to past the word ranges' bounds, then tokens that counters count apart."""
_EXACT = ["ifbench-296", "ifbench-292", "ifbench-83", "ifbench-85", "ifbench-86"]


@settings(max_examples=300, deadline=None)
@given(text=_TEXTS)
def test_declared_constraints_never_pass_what_the_verifier_fails(
    tasks: dict[str, ifbench.IFBenchTask], text: str
) -> None:
    for task_id in ("ifbench-42", "ifbench-45", "ifbench-46", *_EXACT):
        task = tasks[task_id]
        if declared_pass(task, text):
            assert task.passes(text), (task_id, text)
        if task_id in _EXACT:
            assert declared_pass(task, text) is task.passes(text), (task_id, text)
