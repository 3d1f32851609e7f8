"""Idempotent topic provisioning through the Kafka admin client: missing topics are
created, and the configs of existing ones (the workers' table changelogs too) are
brought up to the specs, so a running deployment migrates on its next start."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Mapping
from concurrent.futures import Future

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient
from confluent_kafka.admin._config import AlterConfigOpType, ConfigEntry, ConfigResource
from confluent_kafka.admin._resource import ResourceType
from confluent_kafka.cimpl import NewTopic

from connectors.errors import TopicProvisioningError
from connectors.kafka import KafkaSettings
from schemas.topics import TABLES, TableSpec, TopicSpec, app_id_for, qualified

Configs = Mapping[str, Mapping[str, str]]
"""Topic name -> the configs it should have."""

_log = logging.getLogger(__name__)


def ensure_topics(
    settings: KafkaSettings,
    specs: Iterable[TopicSpec],
    *,
    partitions: int | None = None,
    timeout_s: float = 30.0,
    app_id: str | None = None,
    tables: Iterable[TableSpec] = TABLES,
) -> list[str]:
    """Create the topics that do not exist yet, and set the specs' configs on those that
    do (and on the existing changelogs of ``tables`` under ``app_id``, by default the
    workers' id under the namespace); return the names created.

    ``partitions`` overrides request-scoped topics' counts (every topic keyed by
    ``request_id`` must share one count so stages and tables stay co-partitioned).
    Faust creates the changelogs itself, with the same configs.
    """
    admin = AdminClient(settings.confluent())
    wanted = [_new_topic(s, settings, partitions) for s in specs]
    try:
        existing = set(admin.list_topics(timeout=timeout_s).topics)
    except KafkaException as exc:
        raise TopicProvisioningError(f"cannot list topics: {exc}") from exc
    app = app_id or app_id_for(settings.topic_namespace)
    configs: dict[str, Mapping[str, str]] = {t.topic: t.config or {} for t in wanted}
    configs |= {spec.changelog(app): spec.config() for spec in tables}
    update_configs(admin, {n: c for n, c in configs.items() if n in existing}, timeout_s)
    missing = [t for t in wanted if t.topic not in existing]
    if not missing:
        return []
    return _create(admin, missing, timeout_s)


def config_changes(wanted: Mapping[str, str], current: Mapping[str, str | None]) -> dict[str, str]:
    """The configs to set on a topic: those of ``wanted`` it does not have yet."""
    return {name: value for name, value in wanted.items() if current.get(name) != value}


def update_configs(admin: AdminClient, wanted: Configs, timeout_s: float = 30.0) -> list[str]:
    """Set on existing topics the configs they lack (incrementally: the rest stay as
    they are); return the names of the topics changed."""
    if not wanted:
        return []
    resources = [ConfigResource(ResourceType.TOPIC, name) for name in wanted]
    changes = []
    try:
        described = admin.describe_configs(resources, request_timeout=timeout_s)
        for resource, future in described.items():
            current = {k: e.value for k, e in future.result().items()}
            diff = config_changes(wanted[resource.name], current)
            if diff:
                changes.append(_alteration(resource.name, diff))
        if not changes:
            return []
        altered = admin.incremental_alter_configs(changes, request_timeout=timeout_s)
        for future in altered.values():
            future.result()
    except KafkaException as exc:
        raise TopicProvisioningError(f"cannot update topic configs: {exc}") from exc
    names = [c.name for c in changes]
    _log.info("updated the configs of %d topics: %s", len(names), ", ".join(names))
    return names


def _alteration(topic: str, configs: Mapping[str, str]) -> ConfigResource:
    entries = [
        ConfigEntry(name, value, incremental_operation=AlterConfigOpType.SET)
        for name, value in configs.items()
    ]
    return ConfigResource(ResourceType.TOPIC, topic, incremental_configs=entries)


def _create(admin: AdminClient, missing: list[NewTopic], timeout_s: float) -> list[str]:
    created: list[str] = []
    for name, future in admin.create_topics(missing, request_timeout=timeout_s).items():
        try:
            future.result()
            created.append(name)
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise TopicProvisioningError(f"cannot create {name}: {exc}") from exc
    _log.info("created %d topics: %s", len(created), ", ".join(created))
    _wait_for_leaders(admin, [t.topic for t in missing], timeout_s)
    return created


def _wait_for_leaders(admin: AdminClient, names: list[str], timeout_s: float) -> None:
    """New topics are usable once every partition has a leader."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        meta = admin.list_topics(timeout=timeout_s).topics
        if all(
            n in meta
            and meta[n].partitions
            and all(p.leader >= 0 for p in meta[n].partitions.values())
            for n in names
        ):
            return
        time.sleep(0.1)  # polling metadata inside a deadline loop
    raise TopicProvisioningError(f"partitions of {names} got no leader within {timeout_s:.0f}s")


def _new_topic(spec: TopicSpec, settings: KafkaSettings, partitions: int | None) -> NewTopic:
    count = spec.partitions
    if spec.scales_with_workers:
        count = partitions or settings.partitions or spec.partitions
    return NewTopic(
        qualified(spec, settings.topic_namespace),
        num_partitions=count,
        replication_factor=settings.replication_factor,
        config=spec.config(),
    )


def delete_namespace(settings: KafkaSettings, timeout_s: float = 30.0) -> list[str]:
    """Delete every topic named ``<namespace>.…`` (the provisioned ones and those faust
    made: changelogs, the assignor's); return the names deleted. What cannot be listed or
    deleted is logged, not raised: this is clean-up after a run."""
    prefix = _namespace_prefix(settings)
    admin = AdminClient(settings.confluent())
    try:
        found = admin.list_topics(timeout=timeout_s).topics
    except KafkaException as exc:
        _log.warning("cannot list the topics of %s to delete them: %s", prefix, exc)
        return []
    names = sorted(n for n in found if n.startswith(prefix))
    if not names:
        return []
    futures = admin.delete_topics(names, operation_timeout=timeout_s)
    deleted = [name for name, future in futures.items() if _done(name, future, timeout_s)]
    _log.info("deleted %d of the %d topics under %s", len(deleted), len(names), prefix)
    return deleted


def delete_namespace_groups(settings: KafkaSettings, timeout_s: float = 30.0) -> list[str]:
    """Delete the consumer groups named ``<namespace>.…`` (their members have stopped);
    return the names deleted. Static members do not leave a group when they stop, so a
    group still holding members is tried again until ``timeout_s`` (their session
    timeout ends them), then logged, not raised."""
    prefix = _namespace_prefix(settings)
    admin = AdminClient(settings.confluent())
    try:
        listed = admin.list_consumer_groups(request_timeout=timeout_s)
        groups = listed.result(timeout=timeout_s).valid
    except (KafkaException, TimeoutError) as exc:
        _log.warning("cannot list the consumer groups of %s to delete them: %s", prefix, exc)
        return []
    names = sorted(g.group_id for g in groups if g.group_id.startswith(prefix))
    if not names:
        return []
    deadline = time.monotonic() + timeout_s
    deleted: list[str] = []
    while names:
        futures = admin.delete_consumer_groups(names, request_timeout=timeout_s)
        retry = time.monotonic() < deadline
        names = []
        for name, future in futures.items():
            outcome = _deleted(name, future, timeout_s, retry_when_not_empty=retry)
            if outcome is None:
                names.append(name)
            elif outcome:
                deleted.append(name)
        if names:
            time.sleep(_GROUP_RETRY_S)  # waiting out the stopped members' session
    return deleted


_GROUP_RETRY_S = 1.0


def _deleted(
    name: str, future: Future[None], timeout_s: float, *, retry_when_not_empty: bool
) -> bool | None:
    """Whether the group was deleted; None when it still has members and may be tried
    again."""
    try:
        future.result(timeout=timeout_s)
    except KafkaException as exc:
        error = exc.args[0] if exc.args else None
        if retry_when_not_empty and getattr(error, "code", lambda: None)() == (
            KafkaError.NON_EMPTY_GROUP
        ):
            return None
        _log.warning("could not delete %s: %s", name, exc)
        return False
    except TimeoutError as exc:
        _log.warning("could not delete %s: %s", name, exc)
        return False
    return True


def _namespace_prefix(settings: KafkaSettings) -> str:
    if not settings.topic_namespace:
        raise ValueError("refusing to delete topics or groups without a namespace")
    return f"{settings.topic_namespace}."


def _done(name: str, future: Future[None], timeout_s: float) -> bool:
    return bool(_deleted(name, future, timeout_s, retry_when_not_empty=False))
