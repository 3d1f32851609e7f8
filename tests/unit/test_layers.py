"""One-way imports: schemas <- agents <- connectors <- streams (DESIGN.md section 2)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# What each layer may import from the project.
ALLOWED = {
    "schemas": {"schemas"},
    "agents": {"schemas", "agents"},
    "connectors": {"schemas", "agents", "connectors"},
    "streams": {"schemas", "agents", "connectors", "streams"},
}
# The decision layer stays pure: no I/O libraries, no environment.
FORBIDDEN_IN_AGENTS = {"faust", "aiokafka", "confluent_kafka", "httpx", "redis", "os", "socket"}


def _imports(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name.split(".")[0]) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module.split(".")[0]))
    return found


def _files(layer: str) -> list[Path]:
    return sorted((ROOT / layer).rglob("*.py"))


def violations(layer: str) -> list[str]:
    bad = []
    ours = set(ALLOWED)
    for path in _files(layer):
        for line, top in _imports(path):
            if top in ours and top not in ALLOWED[layer]:
                bad.append(f"{path.relative_to(ROOT)}:{line} imports {top}")
            if layer == "agents" and top in FORBIDDEN_IN_AGENTS:
                bad.append(f"{path.relative_to(ROOT)}:{line} imports {top} (I/O in agents)")
    return bad


@pytest.mark.parametrize("layer", sorted(ALLOWED))
def test_no_upward_imports(layer: str) -> None:
    assert _files(layer), f"{layer}/ has no modules"
    assert violations(layer) == []


def test_the_walker_sees_an_upward_import(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("import os\nfrom streams.app import app\nfrom . import sibling\n")
    assert (2, "streams") in _imports(bad)
    assert all(top != "sibling" for _, top in _imports(bad))


# Reading one variable is a setting; handing the whole environment to a child is not.
_READS_ENV = re.compile(r"os\.environ\s*(\[|\.get\b|\.setdefault\b|\.pop\b)|getenv\(")


def test_only_settings_read_the_environment() -> None:
    offenders = []
    for layer in ALLOWED:
        for path in _files(layer):
            if _READS_ENV.search(path.read_text(encoding="utf-8")):
                offenders.append(str(path.relative_to(ROOT)))
    assert offenders == []


def test_the_environment_check_sees_a_read() -> None:
    assert _READS_ENV.search('x = os.environ["KAFKA"]')
    assert _READS_ENV.search('x = os.environ.get("KAFKA")')
    assert not _READS_ENV.search("env = {**os.environ, **extra}")


# Decisions take time, ids and randomness as arguments: calling a clock, a random source
# or an id generator from agents/ makes a decision that replay cannot re-derive.
_IMPURE_MODULES = {"random", "uuid", "time", "secrets"}
_IMPURE_CALLS = {"now", "utcnow", "today", "fromtimestamp"}
"""Methods of datetime/date that read the clock."""


def impure_calls(path: Path) -> list[str]:
    """Where ``path`` imports a clock, random or id module, or reads the clock."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [
                f"{node.lineno}: import {a.name}"
                for a in node.names
                if a.name.split(".")[0] in _IMPURE_MODULES
            ]
        elif isinstance(node, ast.ImportFrom) and node.module:
            if node.module.split(".")[0] in _IMPURE_MODULES:
                found.append(f"{node.lineno}: from {node.module} import ...")
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            owner = node.func.value
            if (
                node.func.attr in _IMPURE_CALLS
                and isinstance(owner, ast.Name)
                and owner.id in {"datetime", "date"}
            ):
                found.append(f"{node.lineno}: {owner.id}.{node.func.attr}()")
    return found


def test_decisions_never_read_a_clock_randomness_or_ids() -> None:
    offenders = [
        f"{path.relative_to(ROOT)}:{where}"
        for path in _files("agents")
        for where in impure_calls(path)
    ]
    assert offenders == []


@pytest.mark.parametrize(
    "source",
    [
        "import random\n",
        "from uuid import uuid4\n",
        "import time\n",
        "from datetime import datetime\nx = datetime.now()\n",
        "from datetime import datetime\nx = datetime.utcnow()\n",
    ],
)
def test_the_purity_check_sees_a_clock_or_a_random_source(tmp_path: Path, source: str) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text(source)
    assert impure_calls(bad)
