"""Confluent framing through RegistrySchemaIds, against a fake schema registry that is a
real HTTP server on loopback speaking the registry's REST protocol."""

from __future__ import annotations

import base64
import io
import json
import re
import struct
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, cast
from urllib.parse import unquote

import httpx
import pytest
from fastavro import schemaless_writer
from pydantic import SecretStr

from connectors.kafka import KafkaSettings
from connectors.schema_registry import (
    CONTENT_TYPE,
    RegistrySchemaIds,
    RegistrySettings,
    SchemaRegistryError,
    codec_for,
    subject_for,
)
from schemas.catalog import MODELS, catalog, history
from schemas.codec import Codec
from schemas.envelope import Event
from schemas.errors import DecodeError, DecodeReason
from schemas.request_events import FeedbackGiven, TaskAssigned
from tests.loopback import free_port
from tests.samples import sample

NAMESPACE = "t1"
REGISTER = re.compile(r"^/subjects/([^/]+)/versions$")
BY_ID = re.compile(r"^/schemas/ids/(\d+)$")
FOREIGN = {
    "type": "record",
    "name": "Invoice",
    "namespace": "billing",
    "fields": [{"name": "total", "type": "long"}],
}

Reply = tuple[int, dict[str, Any] | None]


@dataclass
class FakeRegistry:
    """The registry's state and behaviour; the HTTP plumbing is in ``_Handler``."""

    url: str = ""
    fail_with: int | None = None
    hang: bool = False
    release: threading.Event = field(default_factory=threading.Event)
    schemas: dict[int, tuple[str, str]] = field(default_factory=dict)
    ids: dict[tuple[str, str], int] = field(default_factory=dict)
    subjects: dict[str, list[int]] = field(default_factory=dict)
    seen: list[tuple[str, str, dict[str, str]]] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def reset(self) -> None:
        with self._lock:
            self.fail_with, self.hang = None, False
            self.release = threading.Event()
            self.schemas.clear()
            self.ids.clear()
            self.subjects.clear()
            self.seen.clear()

    def handle(self, method: str, path: str, headers: dict[str, str], body: bytes) -> Reply:
        with self._lock:
            self.seen.append((method, path, headers))
            release, hang, fail_with = self.release, self.hang, self.fail_with
        if hang:
            release.wait(timeout=30)
            return 0, None  # the client gave up; answer nothing
        if fail_with is not None:
            return fail_with, {"error_code": fail_with, "message": "switched to fail"}
        return self._route(method, path, body)

    def _route(self, method: str, path: str, body: bytes) -> Reply:
        if method == "POST" and (m := REGISTER.match(path)):
            return self._register(unquote(m.group(1)), json.loads(body))
        if method == "GET" and (m := BY_ID.match(path)):
            return self._by_id(int(m.group(1)))
        return 404, {"error_code": 404, "message": "HTTP 404 Not Found"}

    def _register(self, subject: str, request: dict[str, Any]) -> Reply:
        """The registry's register call: the same schema text gets the same id."""
        kind = request.get("schemaType", "AVRO")
        text = request["schema"]
        key = (kind, json.dumps(json.loads(text), sort_keys=True) if kind == "AVRO" else text)
        with self._lock:
            schema_id = self.ids.setdefault(key, len(self.ids) + 1)
            self.schemas[schema_id] = (text, kind)
            self.subjects.setdefault(subject, []).append(schema_id)
        return 200, {"id": schema_id}

    def _by_id(self, schema_id: int) -> Reply:
        with self._lock:
            found = self.schemas.get(schema_id)
        if found is None:
            return 404, {"error_code": 40403, "message": f"Schema {schema_id} not found"}
        text, kind = found
        reply: dict[str, Any] = {"schema": text}
        if kind != "AVRO":
            reply["schemaType"] = kind
        return 200, reply

    def requests(self, method: str) -> list[tuple[str, dict[str, str]]]:
        with self._lock:
            return [(p, h) for m, p, h in self.seen if m == method]


class _Server(ThreadingHTTPServer):
    def __init__(self, fake: FakeRegistry) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.fake = fake


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body are two writes: without this, Nagle holds the body for a delayed ACK.
    disable_nagle_algorithm = True

    def do_GET(self) -> None:
        self._serve("GET")

    def do_POST(self) -> None:
        self._serve("POST")

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the tests assert on recorded requests instead."""

    def _serve(self, method: str) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        fake = cast(_Server, self.server).fake
        status, reply = fake.handle(
            method, self.path, {k.lower(): v for k, v in self.headers.items()}, body
        )
        if reply is None:
            self.close_connection = True
            return
        data = json.dumps(reply).encode()
        self.send_response(status)
        self.send_header("Content-Type", CONTENT_TYPE)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


@pytest.fixture(scope="module")
def server() -> Iterator[FakeRegistry]:
    fake = FakeRegistry()
    httpd = _Server(fake)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    fake.url = f"http://127.0.0.1:{httpd.server_port}"
    yield fake
    fake.release.set()
    httpd.shutdown()
    httpd.server_close()
    thread.join(timeout=10)


@pytest.fixture
def registry(server: FakeRegistry) -> Iterator[FakeRegistry]:
    server.reset()
    yield server
    server.release.set()


def creds(username: str | None = None, password: str | None = None) -> RegistrySettings:
    secret = SecretStr(password) if password is not None else None
    return RegistrySettings(username=username, password=secret, timeout_s=5)


def kafka(url: str | None) -> KafkaSettings:
    return KafkaSettings(schema_registry_url=url, topic_namespace=NAMESPACE)


def reader(registry: FakeRegistry, settings: RegistrySettings | None = None) -> Codec:
    """A codec in another process: nothing registered, nothing cached."""
    return Codec(schema_ids=RegistrySchemaIds(registry.url, settings or creds()))


def framed(schema_id: int, body: bytes = b"") -> bytes:
    return b"\x00" + struct.pack(">I", schema_id) + body


def post_schema(registry: FakeRegistry, subject: str, schema: str, kind: str = "AVRO") -> int:
    """Someone else registers a schema, over the same REST API."""
    request: dict[str, Any] = {"schema": schema}
    if kind != "AVRO":
        request["schemaType"] = kind
    reply = httpx.post(
        f"{registry.url}/subjects/{subject}/versions",
        json=request,
        headers={"Content-Type": CONTENT_TYPE},
    )
    schema_id = reply.json()["id"]
    assert isinstance(schema_id, int)
    return schema_id


@pytest.fixture
def codec(registry: FakeRegistry) -> Codec:
    return codec_for(kafka(registry.url), creds())


def registered_id(registry: FakeRegistry, record_name: str) -> int:
    return registry.subjects[subject_for(record_name, NAMESPACE)][-1]


# --- registration ------------------------------------------------------------------


def test_register_all_gives_every_record_an_id_under_its_topic_subject(
    registry: FakeRegistry,
) -> None:
    ids = RegistrySchemaIds(registry.url, creds()).register_all(catalog(), NAMESPACE)

    assert set(ids) == set(catalog().current)
    assert len(set(ids.values())) == len(ids)
    assert registry.subjects == {subject_for(name, NAMESPACE): [i] for name, i in ids.items()}
    assert "t1.guardian.requests.v1-value" in registry.subjects
    for name, schema_id in ids.items():
        text, _ = registry.schemas[schema_id]
        assert json.loads(text) == catalog().current[name].raw


def test_register_sends_the_registry_content_type(registry: FakeRegistry) -> None:
    RegistrySchemaIds(registry.url, creds()).register_all(catalog(), NAMESPACE)

    posts = registry.requests("POST")
    assert len(posts) == len(catalog().current)
    assert {h["content-type"] for _, h in posts} == {CONTENT_TYPE}


def test_registering_again_keeps_the_ids(registry: FakeRegistry) -> None:
    first = RegistrySchemaIds(registry.url, creds()).register_all(catalog(), NAMESPACE)
    again = RegistrySchemaIds(registry.url, creds()).register_all(catalog(), NAMESPACE)
    assert again == first


def test_id_for_a_schema_never_registered_is_a_programming_error(
    registry: FakeRegistry,
) -> None:
    ids = RegistrySchemaIds(registry.url, creds())
    with pytest.raises(SchemaRegistryError) as caught:
        ids.id_for(catalog().current["FeedbackGiven"])
    assert caught.value.retriable is False
    assert registry.seen == []


# --- framing and decoding ----------------------------------------------------------


@pytest.mark.parametrize("model", MODELS, ids=lambda m: m.record_name)
def test_encode_is_registry_id_plus_the_single_object_body(
    registry: FakeRegistry, codec: Codec, model: type[Event]
) -> None:
    event = sample(model)
    data = codec.encode(event)

    assert data[:1] == b"\x00"
    assert struct.unpack(">I", data[1:5])[0] == registered_id(registry, model.record_name)
    assert data[5:] == Codec().encode(event)[10:]


@pytest.mark.parametrize("model", MODELS, ids=lambda m: m.record_name)
def test_decode_round_trips_every_record(codec: Codec, model: type[Event]) -> None:
    event = sample(model)
    assert codec.decode(codec.encode(event), model) == event


def test_another_process_decodes_by_fetching_each_id_once(
    registry: FakeRegistry, codec: Codec
) -> None:
    events = [sample(m) for m in MODELS]
    wire = [codec.encode(e) for e in events]
    other = reader(registry)

    assert [other.decode_any(d) for d in wire] == events
    assert [other.decode_any(d) for d in wire] == events
    fetched = sorted(p for p, _ in registry.requests("GET"))
    assert fetched == sorted(f"/schemas/ids/{i}" for i in registry.schemas)


def test_an_older_writer_schema_decodes_into_the_current_record(
    registry: FakeRegistry,
) -> None:
    old = history("TaskAssigned")[0]
    schema_id = post_schema(registry, subject_for("TaskAssigned", NAMESPACE), json.dumps(old.raw))
    added = set(TaskAssigned.model_fields) - {f["name"] for f in old.raw["fields"]}
    assert "output_constraint" in added
    record = sample(TaskAssigned).model_dump(exclude=added)
    body = io.BytesIO()
    schemaless_writer(body, old.parsed, record)

    decoded = reader(registry).decode(framed(schema_id, body.getvalue()), TaskAssigned)

    for name in added:  # fields the old writer did not have take their defaults
        assert getattr(decoded, name) == TaskAssigned.model_fields[name].get_default(
            call_default_factory=True
        )
    assert decoded.model_dump(exclude=added) == record


def test_an_unknown_id_is_unknown_schema(registry: FakeRegistry, codec: Codec) -> None:
    body = codec.encode(sample(FeedbackGiven))[5:]
    with pytest.raises(DecodeError) as caught:
        reader(registry).decode(framed(999, body), FeedbackGiven)
    assert caught.value.reason is DecodeReason.UNKNOWN_SCHEMA
    assert [p for p, _ in registry.requests("GET")] == ["/schemas/ids/999"]


def test_an_id_missing_now_is_looked_up_again_later(registry: FakeRegistry) -> None:
    ids = RegistrySchemaIds(registry.url, creds())
    assert ids.version_for(1) is None

    codec_for(kafka(registry.url), creds())

    version = ids.version_for(1)
    assert version is not None
    assert version.version == "current"


@pytest.mark.parametrize(
    ("schema", "kind"),
    [
        pytest.param(json.dumps(FOREIGN), "AVRO", id="foreign-avro-record"),
        pytest.param('syntax = "proto3"; message Invoice {}', "PROTOBUF", id="protobuf"),
    ],
)
def test_a_schema_someone_else_registered_is_unknown_schema(
    registry: FakeRegistry, schema: str, kind: str
) -> None:
    schema_id = post_schema(registry, "billing.invoices-value", schema, kind)
    other = reader(registry)

    for _ in range(2):
        with pytest.raises(DecodeError) as caught:
            other.decode_any(framed(schema_id, b"\x02"))
        assert caught.value.reason is DecodeReason.UNKNOWN_SCHEMA
    assert len(registry.requests("GET")) == 1  # a foreign id stays foreign: cached


def test_without_a_registry_url_the_codec_uses_single_object_encoding() -> None:
    codec = codec_for(kafka(None))
    data = codec.encode(sample(FeedbackGiven))
    assert data[:2] == b"\xc3\x01"
    assert codec.decode(data, FeedbackGiven) == sample(FeedbackGiven)


# --- failures ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "retriable"), [(500, True), (503, True), (429, True), (401, False), (403, False)]
)
def test_lookup_failures_say_whether_a_retry_can_help(
    registry: FakeRegistry, status: int, retriable: bool
) -> None:
    registry.fail_with = status
    with pytest.raises(SchemaRegistryError) as caught:
        reader(registry).decode_any(framed(1))
    assert caught.value.status == status
    assert caught.value.retriable is retriable


@pytest.mark.parametrize(("status", "retriable"), [(500, True), (401, False)])
def test_registration_failures_say_whether_a_retry_can_help(
    registry: FakeRegistry, status: int, retriable: bool
) -> None:
    registry.fail_with = status
    with pytest.raises(SchemaRegistryError) as caught:
        codec_for(kafka(registry.url), creds())
    assert caught.value.retriable is retriable
    assert str(status) in str(caught.value)


def test_a_registry_that_does_not_answer_is_retriable(registry: FakeRegistry) -> None:
    registry.hang = True
    impatient = RegistrySettings(timeout_s=0.2)
    with pytest.raises(SchemaRegistryError) as caught:
        RegistrySchemaIds(registry.url, impatient).version_for(1)
    assert caught.value.retriable is True
    assert "timed out" in str(caught.value)


def test_a_registry_that_refuses_connections_is_retriable() -> None:
    port = free_port()  # nothing listens there
    with pytest.raises(SchemaRegistryError) as caught:
        RegistrySchemaIds(f"http://127.0.0.1:{port}", creds()).version_for(1)
    assert caught.value.retriable is True
    assert caught.value.status is None


# --- authentication ----------------------------------------------------------------


def test_basic_auth_is_sent_when_configured(registry: FakeRegistry) -> None:
    settings = creds("svc-guardian", "s3cret")
    codec = codec_for(kafka(registry.url), settings)
    reader(registry, settings).decode_any(codec.encode(sample(FeedbackGiven)))

    expected = "Basic " + base64.b64encode(b"svc-guardian:s3cret").decode()
    sent = [h.get("authorization") for _, _, h in registry.seen]
    assert len(sent) == len(catalog().current) + 1
    assert set(sent) == {expected}


def test_no_auth_header_without_credentials(registry: FakeRegistry) -> None:
    codec_for(kafka(registry.url), creds())
    assert registry.seen
    assert all("authorization" not in h for _, _, h in registry.seen)


def test_the_password_never_shows_in_settings() -> None:
    assert "s3cret" not in repr(creds("svc", "s3cret"))
