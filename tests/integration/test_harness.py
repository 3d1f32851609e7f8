"""The pipeline harness cleans up after itself: every topic of a test's namespace, also
one made outside the provisioned set, and its consumer groups are gone once the test
leaves it."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest
from confluent_kafka import ConsumerGroupTopicPartitions, TopicPartition
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic

from schemas import topics
from tests.integration.harness import ADMIN_TIMEOUT_S, pipeline

pytestmark = pytest.mark.integration


def under(admin: AdminClient, prefix: str) -> set[str]:
    return {n for n in admin.list_topics(timeout=ADMIN_TIMEOUT_S).topics if n.startswith(prefix)}


def until(admin: AdminClient, prefix: str, done: Callable[[set[str]], bool]) -> set[str]:
    """The topics under ``prefix`` once ``done`` holds for them (metadata follows a
    creation or deletion with a short delay), or at the deadline."""
    deadline = time.monotonic() + ADMIN_TIMEOUT_S
    found = under(admin, prefix)
    while not done(found) and time.monotonic() < deadline:
        time.sleep(0.2)  # polling metadata within a deadline
        found = under(admin, prefix)
    return found


def groups_under(admin: AdminClient, prefix: str) -> set[str]:
    listed = admin.list_consumer_groups(request_timeout=ADMIN_TIMEOUT_S)
    return {g.group_id for g in listed.result().valid if g.group_id.startswith(prefix)}


def test_leaving_a_pipeline_deletes_every_topic_and_group_of_its_namespace(
    kafka_bootstrap: str, kafka_admin: AdminClient, tmp_path: Path
) -> None:
    with pipeline(kafka_bootstrap, tmp_path) as p:
        prefix = f"{p.namespace}."
        internal = f"{prefix}guardian-cluster-some-changelog"  # as faust names its own
        futures = kafka_admin.create_topics([NewTopic(internal, num_partitions=1)])
        futures[internal].result(timeout=ADMIN_TIMEOUT_S)
        made = until(kafka_admin, prefix, lambda found: internal in found)
        group = f"{prefix}guardian-cluster"  # as the workers' group is named
        offsets = [TopicPartition(p.topic(topics.VERDICTS), 0, 0)]
        altered = kafka_admin.alter_consumer_group_offsets(
            [ConsumerGroupTopicPartitions(group, offsets)]
        )
        altered[group].result(timeout=ADMIN_TIMEOUT_S)
        assert groups_under(kafka_admin, prefix) == {group}
    assert internal in made
    assert p.topic(topics.VERDICTS) in made
    assert until(kafka_admin, prefix, lambda found: not found) == set()
    assert groups_under(kafka_admin, prefix) == set()
