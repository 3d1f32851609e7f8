"""Worker capacity as live configuration: a ``capacity.specialist_concurrency`` change
reaches a running worker's model-call slots without a restart, and null gives it back
its own setting."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.integration.harness import pipeline, run_cli
from tests.integration.test_metrics import scrape_until
from tests.integration.test_pipeline import wait_ready
from tests.loopback import free_port

pytestmark = pytest.mark.integration
SLOTS = ("guardian_specialist_slots", ())


async def test_a_live_capacity_change_resizes_the_slots_of_a_running_worker(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}/metrics"
    with pipeline(kafka_bootstrap, tmp_path) as p:
        env = {"GUARDIAN_WORKER_SPECIALIST_CONCURRENCY": "2"}
        p.start_worker(
            GUARDIAN_MODEL_BACKEND="scripted", GUARDIAN_WORKER_METRICS_PORT=str(port), **env
        )
        await wait_ready(p)
        assert (await scrape_until(url, lambda s: s.get(SLOTS) == 2))[SLOTS] == 2
        cli_env = p.worker_env(**env)
        await run_cli(
            ["config", "set", "capacity.specialist_concurrency", "5", "--reason", "more slots"],
            cli_env,
        )
        assert (await scrape_until(url, lambda s: s.get(SLOTS) == 5))[SLOTS] == 5
        await run_cli(
            ["config", "set", "capacity.specialist_concurrency", "null", "--reason", "back"],
            cli_env,
        )
        assert (await scrape_until(url, lambda s: s.get(SLOTS) == 2))[SLOTS] == 2
        assert "model-call slots: 2 -> 5" in p.log()
