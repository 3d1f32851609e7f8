"""The worker's transport: found by faust through the entry point, with the fetch wait
carried on the broker URL."""

from __future__ import annotations

from pathlib import Path

import pytest
from faust.transport.drivers import by_url
from yarl import URL

from streams import transport
from streams.app import create_app
from streams.settings import AppSettings, WorkerSettings


def test_faust_finds_the_transport_by_its_scheme() -> None:
    url = transport.broker_url(["127.0.0.1:9092"], fetch_max_wait_ms=20)
    assert by_url(url) is transport.Transport
    assert transport.Transport.Consumer is transport.SameLoopConsumer


def test_the_broker_url_carries_every_host_and_the_fetch_wait() -> None:
    url = transport.broker_url(["a:1", " b:2"], fetch_max_wait_ms=35)
    urls = [URL(u) for u in url.split(";")]
    assert [(u.scheme, u.host, u.port) for u in urls] == [
        ("guardian-kafka", "a", 1),
        ("guardian-kafka", "b", 2),
    ]
    assert transport.fetch_wait_ms(urls) == 35
    assert transport.fetch_wait_ms([URL("kafka://a:1")]) == transport.DEFAULT_FETCH_WAIT_MS


def test_a_negative_fetch_wait_is_refused() -> None:
    with pytest.raises(ValueError, match="fetch_max_wait_ms"):
        transport.broker_url(["a:1"], fetch_max_wait_ms=-1)


@pytest.mark.parametrize(
    ("consumer", "scheme"), [("same-loop", "guardian-kafka"), ("threaded", "kafka")]
)
def test_the_app_uses_the_consumer_the_settings_name(
    consumer: str, scheme: str, tmp_path: Path
) -> None:
    settings = AppSettings(
        worker=WorkerSettings(consumer=consumer, fetch_wait_ms=15, data_dir=tmp_path)
    )
    app = create_app(settings)
    assert {u.scheme for u in app.conf.broker} == {scheme}
    assert app.conf.broker_commit_interval == settings.worker.commit_interval_s
