"""Topic configs: the table changelogs compact within hours, and provisioning sets on an
existing topic exactly the configs it lacks."""

from __future__ import annotations

from connectors.admin import config_changes
from schemas.topics import DONE_TABLE, HOUR_MS, REFINEMENT_TABLE, SESSIONS_TABLE, TABLES, app_id_for


def test_changelogs_are_compacted_and_rolled_within_hours() -> None:
    for spec in TABLES:
        cfg = spec.config()
        assert cfg["cleanup.policy"] == "compact"
        assert int(cfg["segment.ms"]) <= 2 * HOUR_MS
        assert int(cfg["max.compaction.lag.ms"]) <= 3 * HOUR_MS
        assert int(cfg["delete.retention.ms"]) <= 3 * HOUR_MS
        assert 0 < float(cfg["min.cleanable.dirty.ratio"]) <= 0.5


def test_changelog_names_follow_faust_under_the_namespace() -> None:
    assert app_id_for() == "guardian-cluster"
    assert app_id_for("t1") == "t1.guardian-cluster"
    assert (
        REFINEMENT_TABLE.changelog(app_id_for("t1")) == "t1.guardian-cluster-refinement-changelog"
    )
    assert DONE_TABLE.changelog("guardian-cluster") == "guardian-cluster-refinement-done-changelog"
    assert SESSIONS_TABLE.changelog("guardian-cluster") == "guardian-cluster-sessions-changelog"


def test_only_missing_or_different_configs_are_set() -> None:
    wanted = REFINEMENT_TABLE.config()
    faust_default = {"cleanup.policy": "compact", "segment.ms": "604800000", "retention.ms": "1"}
    changes = config_changes(wanted, faust_default)
    assert "cleanup.policy" not in changes
    assert changes["segment.ms"] == str(HOUR_MS)
    assert set(changes) == set(wanted) - {"cleanup.policy"}
    assert config_changes(wanted, dict(wanted)) == {}


def test_a_config_the_broker_reports_unset_is_set() -> None:
    assert config_changes({"segment.ms": "1"}, {"segment.ms": None}) == {"segment.ms": "1"}
