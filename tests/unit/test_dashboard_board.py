"""The dashboard's board: what it folds from responses, verdicts, alerts, config and
experiments, and the snapshot the page draws."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from agents.config import ExperimentPolicy, PipelineConfig
from agents.config_values import config_changed
from agents.dashboard import Board
from agents.stats import percentile
from schemas.network_events import AlertRaised, ExperimentConcluded
from schemas.request_events import ResponseDelivered, VerdictIssued

AT = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
T0 = 1_000_000.0


def response(
    status: str, rounds: int = 1, latency_ms: float = 100.0, **kw: Any
) -> ResponseDelivered:
    return ResponseDelivered(
        event_id="e",
        request_id="r",
        occurred_at=AT,
        status=status,
        rounds=rounds,
        latency_ms=latency_ms,
        **kw,
    )


def test_counts_shares_rounds_and_a_continuous_latency_series() -> None:
    board = Board(bucket_s=5.0)
    for i in range(8):
        board.response(response("passed", latency_ms=10.0 * (i + 1)), T0)
    board.response(response("failed", rounds=3, latency_ms=900.0), T0 + 1)
    board.response(response("rejected", rounds=0, latency_ms=2.0), T0 + 12)
    board.response(response("rejected", submission_id="other"), T0 + 12)  # not an answer
    snap = board.snapshot(T0 + 20)
    assert snap["totals"] == {
        "requests": 10,
        "passed": 8,
        "failed": 1,
        "rejected": 1,
        "timeout": 0,
        "error": 0,
    }
    assert snap["shares"]["passed"] == 0.8
    assert snap["rounds"] == {"1": 8, "3": 1}
    assert snap["rate_per_s"] == round(10 / 60, 3)
    series = snap["series"]
    assert series["t"] == [T0, T0 + 5, T0 + 10, T0 + 15, T0 + 20]
    assert series["per_s"] == [1.8, 0.0, 0.2, 0.0, 0.0]
    assert series["p50_ms"][0] == 50.0
    assert series["p99_ms"][0] == 900.0
    assert series["p50_ms"][1] is None


def test_memory_is_bounded() -> None:
    board = Board(bucket_s=1.0, buckets=10, recent=3)
    for i in range(100):
        board.response(response("passed"), T0 + i)
        board.verdict(verdict(i))
    assert len(board.series) == 10
    assert len(board.failing) == 3
    assert board.failing[0]["round"] == 99
    assert len(board.snapshot(T0 + 99)["series"]["t"]) == 10


def verdict(round_: int, passed: bool = False) -> VerdictIssued:
    return VerdictIssued(
        event_id=f"v{round_}",
        request_id="r",
        occurred_at=AT,
        task_id="t",
        round=round_,
        answer_event_id="a",
        passed=passed,
        score=0.4,
        threshold=0.7,
        critique="The answer is not valid JSON.",
        failure_classes=("format",),
    )


def test_failing_verdicts_open_alerts_config_and_experiments() -> None:
    board = Board()
    board.verdict(verdict(1))
    board.verdict(verdict(2, passed=True))
    alert = AlertRaised(
        event_id="a",
        request_id="x",
        occurred_at=AT,
        alert_id="x",
        rule="pass_rate_drop",
        severity="warning",
        subject="general",
        state="firing",
        value=0.5,
        threshold=0.8,
        started_at=AT,
    )
    board.alert(alert)
    board.alert(alert.model_copy(update={"alert_id": "y"}))
    board.alert(alert.model_copy(update={"state": "resolved"}))
    running = PipelineConfig(
        experiment=ExperimentPolicy(id="exp-1", key="refine.max_rounds", value="4")
    )
    board.config_changed(
        config_changed(
            PipelineConfig(version=2),
            running,
            changed_by="proposer",
            reason="",
            now=AT,
            event_id="c3",
        )
    )
    board.experiment(
        ExperimentConcluded(
            event_id="c",
            request_id="exp-0",
            occurred_at=AT,
            experiment_id="exp-0",
            proposal_id="p",
            control_n=10,
            control_passes=5,
            treatment_n=10,
            treatment_passes=8,
            control_mean_score=0.5,
            treatment_mean_score=0.8,
            effect_size=0.3,
            p_value_pass_rate=0.01,
            p_value_scores=0.02,
            decision="promote",
        )
    )
    snap = board.snapshot(T0)
    assert [f["critique"] for f in snap["failing"]] == ["The answer is not valid JSON."]
    assert [a["alert_id"] for a in snap["alerts"]] == ["y"]
    assert snap["config"]["version"] == 3
    assert snap["experiments"]["running"][0]["experiment_id"] == "exp-1"
    assert snap["experiments"]["concluded"][0]["decision"] == "promote"


def test_percentile_is_nearest_rank() -> None:
    assert percentile([], 50) is None
    assert percentile([3.0, 1.0, 2.0], 50) == 2.0
    assert percentile([float(i) for i in range(1, 101)], 99) == 99.0
