"""Avro schema-resolution compatibility: can a reader schema read a writer's data?

Follows the resolution rules of the Avro specification for the types the
contract uses (records, unions, arrays, maps, primitives with promotion).
"""

from __future__ import annotations

from typing import Any

_PROMOTIONS = {
    "int": {"int", "long", "float", "double"},
    "long": {"long", "float", "double"},
    "float": {"float", "double"},
    "string": {"string", "bytes"},
    "bytes": {"bytes", "string"},
}


def _kind(schema: Any) -> str:
    if isinstance(schema, list):
        return "union"
    if isinstance(schema, dict):
        return str(schema["type"])
    return str(schema)


def problems(reader: Any, writer: Any, path: str = "$") -> list[str]:
    """Every reason ``reader`` cannot read data written with ``writer`` (empty: compatible)."""
    wk, rk = _kind(writer), _kind(reader)
    if wk == "union":
        return [
            p for i, branch in enumerate(writer) for p in problems(reader, branch, f"{path}|{i}")
        ]
    if rk == "union":
        if any(not problems(branch, writer, path) for branch in reader):
            return []
        return [f"{path}: no branch of the reader union accepts writer type {wk}"]
    if wk in _PROMOTIONS or rk in _PROMOTIONS or wk != rk:
        ok = rk in _PROMOTIONS.get(wk, {wk})
        return [] if ok else [f"{path}: writer {wk} cannot be read as {rk}"]
    if rk == "record":
        return _record_problems(reader, writer, path)
    if rk == "array":
        return problems(reader["items"], writer["items"], f"{path}[]")
    if rk == "map":
        return problems(reader["values"], writer["values"], f"{path}{{}}")
    if rk == "enum":
        missing = set(writer["symbols"]) - set(reader["symbols"])
        return (
            [f"{path}: enum symbols {sorted(missing)} unknown to reader"]
            if missing and "default" not in reader
            else []
        )
    return []


def _record_problems(reader: dict[str, Any], writer: dict[str, Any], path: str) -> list[str]:
    if reader.get("name") != writer.get("name"):
        return [f"{path}: record {writer.get('name')} read as {reader.get('name')}"]
    written = {f["name"]: f for f in writer["fields"]}
    found: list[str] = []
    for field in reader["fields"]:
        where = f"{path}.{field['name']}"
        if field["name"] in written:
            found += problems(field["type"], written[field["name"]]["type"], where)
        elif "default" not in field:
            found.append(f"{where}: new field without a default")
    return found


def full_problems(new: Any, old: Any) -> list[str]:
    """Backward (new reads old) and forward (old reads new) problems."""
    back = [f"backward: {p}" for p in problems(new, old)]
    fwd = [f"forward: {p}" for p in problems(old, new)]
    return back + fwd
