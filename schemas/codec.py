"""The one codec: events to Avro binary with a schema identifier, and back, strictly.

Wire formats:
- Avro single-object encoding (default): ``C3 01`` + 8-byte little-endian
  CRC-64-AVRO fingerprint of the writer schema + Avro binary body.
- Confluent framing (when a schema registry is configured): ``00`` + 4-byte
  big-endian registry id + body. The id lookups come from a ``SchemaIds``
  implementation (the registry connector); the codec itself does no I/O.
"""

from __future__ import annotations

import io
import struct
from collections.abc import Mapping
from typing import Any, Protocol, TypeVar

from fastavro import schemaless_reader, schemaless_writer
from pydantic import ValidationError

from schemas.catalog import Catalog, SchemaVersion, catalog
from schemas.envelope import Event
from schemas.errors import DecodeError, DecodeReason, EncodeError

E = TypeVar("E", bound=Event)

SINGLE_OBJECT_MAGIC = b"\xc3\x01"
CONFLUENT_MAGIC = b"\x00"
DEFAULT_MAX_PAYLOAD = 1024 * 1024


class SchemaIds(Protocol):
    """Registry ids for writer schemas (Confluent framing)."""

    def id_for(self, version: SchemaVersion) -> int: ...

    def version_for(self, schema_id: int) -> SchemaVersion | None: ...


class StaticSchemaIds:
    """Ids known up front (tests, or ids a registry connector already fetched)."""

    def __init__(self, ids: Mapping[int, SchemaVersion]) -> None:
        self._by_id = dict(ids)
        self._by_fp = {v.fingerprint: i for i, v in ids.items()}

    def id_for(self, version: SchemaVersion) -> int:
        return self._by_fp[version.fingerprint]

    def version_for(self, schema_id: int) -> SchemaVersion | None:
        return self._by_id.get(schema_id)


class Codec:
    """Encodes and decodes every event; the only place that touches Avro."""

    def __init__(
        self,
        *,
        schema_ids: SchemaIds | None = None,
        max_payload: int = DEFAULT_MAX_PAYLOAD,
        cat: Catalog | None = None,
    ) -> None:
        self._catalog = cat or catalog()
        self._ids = schema_ids
        self._max_payload = max_payload

    def encode(self, event: Event) -> bytes:
        version = self._catalog.current[event.record_name]
        out = io.BytesIO()
        out.write(self._header(version))
        try:
            schemaless_writer(out, version.parsed, event.model_dump())
        except (TypeError, ValueError, OverflowError) as exc:
            raise EncodeError(f"{event.record_name}: {exc}") from exc
        return out.getvalue()

    def decode(self, data: bytes, expected: type[E]) -> E:
        """Decode ``data`` that must hold an ``expected`` record."""
        event = self.decode_any(data)
        if not isinstance(event, expected):
            raise DecodeError(
                DecodeReason.WRONG_RECORD,
                f"expected {expected.record_name}, got {event.record_name}",
            )
        return event

    def decode_any(self, data: bytes) -> Event:
        writer, offset = self._writer_of(data)
        reader = self._catalog.current[writer.record_name]
        record = self._read_body(data, offset, writer, reader)
        try:
            return self._catalog.model(writer.record_name).model_validate(record)
        except ValidationError as exc:
            raise DecodeError(DecodeReason.INVALID_VALUE, _first_error(exc)) from exc

    def _header(self, version: SchemaVersion) -> bytes:
        if self._ids is None:
            return SINGLE_OBJECT_MAGIC + struct.pack("<Q", version.fingerprint)
        return CONFLUENT_MAGIC + struct.pack(">I", self._ids.id_for(version))

    def _writer_of(self, data: bytes) -> tuple[SchemaVersion, int]:
        if not data:
            raise DecodeError(DecodeReason.EMPTY, "no bytes")
        if len(data) > self._max_payload:
            raise DecodeError(
                DecodeReason.OVERSIZE, f"{len(data)} bytes > limit {self._max_payload}"
            )
        if data[:2] == SINGLE_OBJECT_MAGIC:
            return self._single_object_writer(data), 10
        if data[:1] == CONFLUENT_MAGIC and self._ids is not None:
            return self._confluent_writer(data), 5
        raise DecodeError(
            DecodeReason.BAD_MAGIC, f"header {data[:2].hex()!r} is not a known format"
        )

    def _single_object_writer(self, data: bytes) -> SchemaVersion:
        if len(data) < 10:
            raise DecodeError(DecodeReason.TRUNCATED, "header shorter than 10 bytes")
        (fingerprint,) = struct.unpack_from("<Q", data, 2)
        version = self._catalog.by_fingerprint.get(fingerprint)
        if version is None:
            raise DecodeError(DecodeReason.UNKNOWN_SCHEMA, f"fingerprint {fingerprint:016x}")
        return version

    def _confluent_writer(self, data: bytes) -> SchemaVersion:
        assert self._ids is not None
        if len(data) < 5:
            raise DecodeError(DecodeReason.TRUNCATED, "header shorter than 5 bytes")
        (schema_id,) = struct.unpack_from(">I", data, 1)
        version = self._ids.version_for(schema_id)
        if version is None:
            raise DecodeError(DecodeReason.UNKNOWN_SCHEMA, f"registry id {schema_id}")
        return version

    @staticmethod
    def _read_body(
        data: bytes, offset: int, writer: SchemaVersion, reader: SchemaVersion
    ) -> dict[str, Any]:
        buf = io.BytesIO(data)
        buf.seek(offset)
        # Same schema: no resolution needed (the common case, and the fast one).
        resolve = None if writer.fingerprint == reader.fingerprint else reader.parsed
        try:
            record = schemaless_reader(buf, writer.parsed, resolve)
        except UnicodeDecodeError as exc:
            raise DecodeError(DecodeReason.INVALID_UTF8, str(exc)) from exc
        except (EOFError, IndexError, struct.error) as exc:
            raise DecodeError(DecodeReason.TRUNCATED, f"body ends early: {exc}") from exc
        except (ValueError, TypeError, OverflowError, KeyError, MemoryError) as exc:
            raise DecodeError(DecodeReason.INVALID_VALUE, f"{type(exc).__name__}: {exc}") from exc
        if buf.tell() != len(data):
            raise DecodeError(
                DecodeReason.TRAILING_BYTES, f"{len(data) - buf.tell()} bytes after the record"
            )
        if not isinstance(record, dict):
            raise DecodeError(DecodeReason.INVALID_VALUE, "body is not a record")
        return record


def _first_error(exc: ValidationError) -> str:
    err = exc.errors()[0]
    where = ".".join(str(p) for p in err["loc"])
    return f"{where}: {err['msg']}"
