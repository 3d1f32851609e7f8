"""The shipped alert rules and dashboard only name metrics the workers really serve."""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml
from prometheus_client import CollectorRegistry

from streams.metrics import Metrics

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
_NAME = re.compile(r"\bguardian_[a-z_]+")


def served_names() -> set[str]:
    registry = CollectorRegistry()
    Metrics(registry)
    names: set[str] = set()
    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "gauge": ("",)}
    for family in registry.collect():
        names.update(family.name + suffix for suffix in suffixes[family.type])
    return names


def referenced(expr: str) -> set[str]:
    return set(_NAME.findall(expr))


def rule_exprs() -> list[str]:
    doc = yaml.safe_load((DEPLOY / "prometheus" / "rules.yml").read_text())
    return [rule["expr"] for group in doc["groups"] for rule in group["rules"]]


def dashboard_exprs() -> list[str]:
    doc = json.loads((DEPLOY / "grafana" / "guardian-dashboard.json").read_text())
    return [t["expr"] for p in doc["panels"] for t in p["targets"]]


def test_alert_rules_use_only_served_metrics() -> None:
    exprs = rule_exprs()
    assert len(exprs) >= 5
    unknown = {n for e in exprs for n in referenced(e)} - served_names()
    assert unknown == set()


def test_dashboard_uses_only_served_metrics() -> None:
    exprs = dashboard_exprs()
    assert len(exprs) >= 10
    unknown = {n for e in exprs for n in referenced(e)} - served_names()
    assert unknown == set()


def test_the_checker_notices_a_misspelt_metric() -> None:
    assert referenced("rate(guardian_responses_totl[5m])") - served_names() == {
        "guardian_responses_totl"
    }


def test_metric_names_follow_the_house_rule() -> None:
    registry = CollectorRegistry()
    Metrics(registry)
    for family in registry.collect():
        assert family.name.startswith("guardian_")
        if family.type == "histogram" and "seconds" in family.name:
            assert family.name.endswith("_seconds"), family.name
