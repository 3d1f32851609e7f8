"""What a soak samples: resident memory, a Prometheus gauge, growth per 10k requests; and
the process behind a listening port."""

from __future__ import annotations

import os
import socket

import pytest

from streams.bench.cpu import listener_pid
from streams.bench.memory import growth_per_10k, metric_value, rss_mb, slope

EXPOSITION = """\
# HELP guardian_refine_table_entries Entries in the refinement table on this worker.
# TYPE guardian_refine_table_entries gauge
guardian_refine_table_entries 1234.0
guardian_refine_table_entries_total 99.0
guardian_consumer_lag_messages{topic="a"} 3.0
guardian_consumer_lag_messages{topic="b"} 4.0
"""


def test_a_gauge_is_read_by_its_exact_name() -> None:
    assert metric_value(EXPOSITION, "guardian_refine_table_entries") == 1234.0


def test_a_labelled_metric_sums_its_series() -> None:
    assert metric_value(EXPOSITION, "guardian_consumer_lag_messages") == 7.0


def test_an_absent_metric_is_none() -> None:
    assert metric_value(EXPOSITION, "guardian_refine_table") is None
    assert metric_value("", "guardian_refine_table_entries") is None


def test_the_slope_is_the_least_squares_fit() -> None:
    assert slope([0, 1, 2, 3], [1, 3, 5, 7]) == pytest.approx(2.0)
    assert slope([0, 1, 2], [1, 2, 1]) == pytest.approx(0.0)
    assert slope([5], [1]) is None
    assert slope([5, 5], [1, 2]) is None
    with pytest.raises(ValueError, match="length"):
        slope([1, 2], [1])


def test_growth_ignores_the_warm_up_and_scales_to_10k_requests() -> None:
    answered = [0, 500, 1000, 2000, 3000, 4000]
    rss = [100.0, 180.0, 200.0, 200.5, 201.0, 201.5]  # the first 1000: start-up growth
    assert growth_per_10k(answered, rss, warm_up=1000) == pytest.approx(5.0)
    assert growth_per_10k(answered, rss, warm_up=4000) is None


def test_the_resident_memory_of_this_process() -> None:
    mine = rss_mb(os.getpid())
    assert mine is not None
    assert 1 < mine < 100_000
    assert rss_mb(2**22 + 12345) is None  # above the kernel's pid limit: never a process


def test_the_process_listening_on_a_port() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        assert listener_pid(port) == os.getpid()
    assert listener_pid(port) is None
