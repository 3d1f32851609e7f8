"""The session context: recent turns within a token budget, rendered for tasks."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from agents.context import (
    MAX_PENDING,
    MAX_SEEN,
    SessionContext,
    SessionState,
    add_turn,
    on_answer,
    on_prompt,
    render,
    render_turn,
    word_count,
)

EMPTY = SessionContext()


def len_over_4(text: str) -> int:
    """A character-based counter (about four characters a token)."""
    return len(text) // 4


def tokens(ctx: SessionContext) -> int:
    return sum(word_count(s) for s in render(ctx))


def grow(turns: int, budget: int) -> SessionContext:
    ctx = EMPTY
    for n in range(turns):
        ctx = add_turn(ctx, f"question {n}", f"answer {n} here", max_tokens_budget=budget)
    return ctx


def test_render_is_one_string_per_turn_oldest_first() -> None:
    ctx = SessionContext(turns=(("hi", "hello"), ("and you?", "fine")))
    assert render(ctx) == ("User: hi\nAssistant: hello", "User: and you?\nAssistant: fine")
    assert render(EMPTY) == ()


def test_word_count_counts_whitespace_separated_words() -> None:
    assert word_count("  one two\nthree\t") == 3
    assert word_count("") == 0


def test_turns_accumulate_while_they_fit() -> None:
    ctx = grow(3, budget=1000)
    assert ctx.turns == tuple((f"question {n}", f"answer {n} here") for n in range(3))
    assert ctx.dropped == 0


def test_the_oldest_turns_are_dropped_to_stay_within_the_budget() -> None:
    per_turn = word_count(render_turn("question 0", "answer 0 here"))  # 7
    ctx = grow(10, budget=3 * per_turn + 1)
    assert [u for u, _ in ctx.turns] == ["question 7", "question 8", "question 9"]
    assert ctx.dropped == 7
    assert tokens(ctx) <= 3 * per_turn + 1


def test_an_old_turn_is_not_kept_once_a_newer_one_was_dropped() -> None:
    ctx = SessionContext(turns=(("a", "b"), ("long " * 50, "long " * 50)))
    ctx = add_turn(ctx, "c", "d", max_tokens_budget=10)
    assert ctx.turns == (("c", "d"),)  # "a" would fit, but order is kept: no gaps


def test_a_newest_turn_over_budget_is_kept_with_its_answer_cut() -> None:
    answer = " ".join(f"w{n}" for n in range(100))
    ctx = add_turn(grow(2, 1000), "summarise", answer, max_tokens_budget=20)
    ((user, cut),) = ctx.turns
    assert user == "summarise"
    assert cut.endswith("…")
    assert answer.startswith(cut.removesuffix("…").rstrip())
    assert tokens(ctx) == 20  # the longest cut that fits
    assert ctx.dropped == 2


def test_a_cut_answer_ends_on_a_word_boundary() -> None:
    # "User: q / Assistant: alpha beta …" is six words, the cut mark included.
    ctx = add_turn(EMPTY, "q", "alpha beta gamma delta", max_tokens_budget=6)
    assert ctx.turns == (("q", "alpha beta …"),)
    # A first word longer than the room left is cut inside the word.
    ctx = add_turn(EMPTY, "q", "alphabet soup", max_tokens_budget=6, count_tokens=len_over_4)
    assert ctx.turns == (("q", "alphab …"),)


def test_a_question_alone_over_budget_leaves_an_empty_context() -> None:
    ctx = add_turn(grow(2, 1000), "word " * 30, "answer", max_tokens_budget=10)
    assert ctx.turns == ()
    assert ctx.dropped == 3


def test_the_token_counter_is_passed_in() -> None:
    def chars(text: str) -> int:
        return len(text)

    ctx = grow(1, 1000)
    ctx = add_turn(ctx, "q", "a", max_tokens_budget=len(render_turn("q", "a")), count_tokens=chars)
    assert ctx.turns == (("q", "a"),)


def test_adding_returns_a_new_context() -> None:
    before = grow(1, 1000)
    after = add_turn(before, "x", "y", max_tokens_budget=1000)
    assert len(before.turns) == 1
    assert len(after.turns) == 2
    with pytest.raises(ValidationError):
        before.turns = ()  # type: ignore[misc]


def test_a_negative_budget_is_refused() -> None:
    with pytest.raises(ValueError, match="budget"):
        add_turn(EMPTY, "q", "a", max_tokens_budget=-1)


# ---- the session table value --------------------------------------------------------


def test_a_prompt_waits_for_its_answer_then_becomes_a_turn() -> None:
    state = on_prompt(SessionState(), "r1", "hi")
    assert (state.pending, state.context.turns) == ((("r1", "hi"),), ())
    state = on_answer(state, "r1", "hello", max_tokens_budget=100)
    assert state.pending == ()
    assert state.context.turns == (("hi", "hello"),)


def test_answers_join_in_the_order_they_arrive_and_pending_prompts_stay_out() -> None:
    state = on_prompt(on_prompt(SessionState(), "r1", "one"), "r2", "two")
    state = on_answer(state, "r2", "second", max_tokens_budget=100)
    assert state.context.turns == (("two", "second"),)
    assert state.pending == (("r1", "one"),)


def test_a_redelivered_prompt_or_answer_is_counted_once() -> None:
    state = on_prompt(SessionState(), "r1", "hi")
    assert on_prompt(state, "r1", "hi") == state
    answered = on_answer(state, "r1", "hello", max_tokens_budget=100)
    assert on_answer(answered, "r1", "hello", max_tokens_budget=100) == answered
    assert on_prompt(answered, "r1", "hi") == answered  # seen, even though answered


def test_an_answer_without_content_leaves_no_turn() -> None:
    state = on_answer(on_prompt(SessionState(), "r1", "hi"), "r1", None, max_tokens_budget=100)
    assert (state.pending, state.context.turns) == ((), ())


def test_an_unknown_answer_changes_nothing() -> None:
    state = on_prompt(SessionState(), "r1", "hi")
    assert on_answer(state, "r9", "x", max_tokens_budget=100) == state


def test_pending_prompts_and_seen_ids_are_bounded() -> None:
    state = SessionState()
    for i in range(MAX_SEEN + 10):
        state = on_prompt(state, f"r{i}", "p")
    assert len(state.pending) == MAX_PENDING
    assert state.pending[-1] == (f"r{MAX_SEEN + 9}", "p")
    assert len(state.seen) == MAX_SEEN


def test_the_budget_applies_to_answered_turns() -> None:
    state = SessionState()
    for i in range(5):
        state = on_answer(
            on_prompt(state, f"r{i}", f"q{i}"), f"r{i}", "a b c", max_tokens_budget=12
        )
    assert [u for u, _ in state.context.turns] == ["q3", "q4"]
    assert state.context.dropped == 3
