"""Every Prometheus metric of a worker, in one object built on an injectable registry.

Names follow ``guardian_<area>_<noun>_<unit>``; labels come from closed sets
(stage names, statuses, guardian names, model names, error classes), never ids.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
_SCORE_BUCKETS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)
_ROUND_BUCKETS = (1, 2, 3, 4, 5, 6, 8, 10)


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.stage_events = Counter(
            "guardian_stage_events_total",
            "Records handled, by stage and outcome.",
            ["stage", "outcome"],
            registry=r,
        )
        self.stage_seconds = Histogram(
            "guardian_stage_duration_seconds",
            "Time to handle one record, by stage.",
            ["stage"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.stage_errors = Counter(
            "guardian_stage_errors_total",
            "Records that failed, by stage and error class.",
            ["stage", "error_class"],
            registry=r,
        )
        self.dead_letters = Counter(
            "guardian_dead_letters_total",
            "Records sent to the dead-letter topic.",
            ["stage", "reason"],
            registry=r,
        )
        self._model_metrics(r)
        self._lane_metrics(r)
        self._decision_metrics(r)

    def _model_metrics(self, r: CollectorRegistry) -> None:
        self.model_calls = Counter(
            "guardian_specialist_model_calls_total",
            "Model calls, by model and outcome.",
            ["model", "outcome"],
            registry=r,
        )
        self.model_seconds = Histogram(
            "guardian_specialist_model_call_seconds",
            "Model call latency, by model.",
            ["model"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.tokens = Counter(
            "guardian_specialist_tokens_total",
            "Tokens used, by model and kind.",
            ["model", "kind"],
            registry=r,
        )

    def _lane_metrics(self, r: CollectorRegistry) -> None:
        self.model_slots = Gauge(
            "guardian_specialist_slots",
            "Model-call slots of this worker (the live config's, else its own setting).",
            registry=r,
        )
        self.lane_tasks = Counter(
            "guardian_specialist_lane_tasks_total",
            "Tasks given a model-call slot, by priority lane.",
            ["lane"],
            registry=r,
        )
        self.lane_waiting = Gauge(
            "guardian_specialist_lane_waiting_tasks",
            "Tasks read from a lane topic and waiting for a model-call slot, by lane.",
            ["lane"],
            registry=r,
        )
        self.lane_wait_seconds = Histogram(
            "guardian_specialist_lane_wait_seconds",
            "Time a task waited in the worker for a model-call slot, by lane.",
            ["lane"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )

    def _decision_metrics(self, r: CollectorRegistry) -> None:
        self.guardian_scores = Histogram(
            "guardian_guardian_score",
            "Scores given, by guardian (combined = 'overall').",
            ["guardian"],
            buckets=_SCORE_BUCKETS,
            registry=r,
        )
        self.verdicts = Counter(
            "guardian_guardian_verdicts_total",
            "Verdicts, by outcome (pass, fail).",
            ["outcome"],
            registry=r,
        )
        self.rounds = Histogram(
            "guardian_refine_rounds",
            "Refinement rounds of finished requests.",
            buckets=_ROUND_BUCKETS,
            registry=r,
        )
        self.responses = Counter(
            "guardian_responses_total",
            "Final responses, by status.",
            ["status"],
            registry=r,
        )
        self.end_to_end = Histogram(
            "guardian_end_to_end_seconds",
            "From submission to final response.",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.cache_hits = Counter(
            "guardian_cache_hits_total",
            "Requests answered from the cache.",
            registry=r,
        )
        self.decomposed = Counter(
            "guardian_decomposed_requests_total",
            "Requests split into subtasks for several specialists.",
            registry=r,
        )
        self.open_requests = Gauge(
            "guardian_refine_open_requests",
            "Requests in refinement on this worker.",
            registry=r,
        )
        self.consumer_lag = Gauge(
            "guardian_consumer_lag_messages",
            "Records not yet consumed, by topic.",
            ["topic"],
            registry=r,
        )
        self.recommended_workers = Gauge(
            "guardian_recommended_workers",
            "Workers the load needs, as the system optimizer saw it at its last evaluation "
            "(on the worker that runs it).",
            registry=r,
        )
        self._table_metrics(r)
        self.passed_over = Counter(
            "guardian_consumer_passed_over_total",
            "Records the consumer passed over in a rebalance and read again, by topic.",
            ["topic"],
            registry=r,
        )
        self.task_errors = Counter(
            "guardian_worker_task_errors_total",
            "Background tasks (timers, followers) that raised and were restarted.",
            ["task"],
            registry=r,
        )
        self.send_retries = Counter(
            "guardian_stage_retries_total",
            "Records handled again after a transient error, by stage.",
            ["stage"],
            registry=r,
        )

    def _table_metrics(self, r: CollectorRegistry) -> None:
        self.refine_table_entries = Gauge(
            "guardian_refine_table_entries",
            "Request states in this worker's refinement table (open, or finished and "
            "still within their retention).",
            registry=r,
        )
        self.refine_done_markers = Gauge(
            "guardian_refine_done_markers",
            "Done markers of finished requests held by this worker.",
            registry=r,
        )
        self.refine_index_parsed = Counter(
            "guardian_refine_index_parsed_entries_total",
            "Refinement table entries parsed to index them (entries recovered from the "
            "changelog; never a scan of the table).",
            registry=r,
        )
