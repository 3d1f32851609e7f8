"""Confluent Schema Registry ids for the codec: registers our schemas and resolves
registry ids to known writer schemas over the registry's REST API."""

from __future__ import annotations

import json
import logging
import ssl
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cached_property
from typing import Any, TypeVar
from urllib.parse import quote

import httpx
from fastavro.schema import to_parsing_canonical_form
from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from connectors.kafka import KafkaSettings
from schemas import topics
from schemas.catalog import Catalog, SchemaVersion, catalog, crc64_avro
from schemas.codec import Codec
from schemas.errors import GuardianError

_log = logging.getLogger(__name__)
T = TypeVar("T")

CONTENT_TYPE = "application/vnd.schemaregistry.v1+json"
_ACCEPT = f"{CONTENT_TYPE}, application/vnd.schemaregistry+json, application/json"
# Client errors that say "not now" rather than "never".
_RETRIABLE_4XX = frozenset({408, 429})


class SchemaRegistryError(GuardianError):
    """The schema registry could not be reached or refused a request."""

    def __init__(self, message: str, *, retriable: bool, status: int | None = None) -> None:
        super().__init__(message)
        self.retriable = retriable
        self.status = status


class RegistrySettings(BaseSettings):
    """Credentials and timeout for the schema registry (``GUARDIAN_REGISTRY_*``);
    its URL is ``KafkaSettings.schema_registry_url``."""

    model_config = SettingsConfigDict(env_prefix="GUARDIAN_REGISTRY_", frozen=True)

    username: str | None = None
    password: SecretStr | None = None
    timeout_s: float = Field(default=10, gt=0)

    def auth(self) -> tuple[str, str] | None:
        """HTTP basic-auth credentials, when a username is configured."""
        if self.username is None:
            return None
        secret = self.password.get_secret_value() if self.password else ""
        return self.username, secret


def subject_for(record_name: str, namespace: str = "") -> str:
    """The TopicNameStrategy subject of a record's value: ``<topic>-value``."""
    return f"{topics.qualified(topics.BY_RECORD[record_name], namespace)}-value"


class RegistrySchemaIds:
    """The codec's ``SchemaIds`` backed by a Confluent Schema Registry.

    Ids of our current schemas come from ``register_all`` at start-up; an id
    seen on the wire is fetched once and mapped to a known writer schema by its
    fingerprint. Registry ids never change their schema, so both maps are
    cached for the life of the process. Calls are synchronous, like the codec.
    """

    def __init__(self, url: str, settings: RegistrySettings, *, cat: Catalog | None = None) -> None:
        self._url = url
        self._settings = settings
        self._catalog = cat or catalog()
        self._id_by_fp: dict[int, int] = {}
        self._by_id: dict[int, SchemaVersion | None] = {}

    def register_all(self, cat: Catalog, namespace: str = "") -> dict[str, int]:
        """Register every current schema under its topic's subject; record name -> id."""
        ids: dict[str, int] = {}
        with self._client() as client:
            for name, version in cat.current.items():
                ids[name] = self._register(client, subject_for(name, namespace), version)
        return ids

    def id_for(self, version: SchemaVersion) -> int:
        schema_id = self._id_by_fp.get(version.fingerprint)
        if schema_id is None:
            raise SchemaRegistryError(
                f"{version.record_name} ({version.version}) was never registered; "
                "call register_all() first",
                retriable=False,
            )
        return schema_id

    def version_for(self, schema_id: int) -> SchemaVersion | None:
        if schema_id in self._by_id:
            return self._by_id[schema_id]
        raw = self._fetch(schema_id)
        if raw is None:
            return None  # not cached: the id may be registered later
        version = self._known(schema_id, raw)
        self._by_id[schema_id] = version
        return version

    def _register(self, client: httpx.Client, subject: str, version: SchemaVersion) -> int:
        path = f"/subjects/{quote(subject, safe='')}/versions"
        body = json.dumps({"schema": json.dumps(version.raw)})
        reply = _call(client, "POST", path, content=body, headers={"Content-Type": CONTENT_TYPE})
        schema_id = _field(reply, "id", int)
        self._id_by_fp[version.fingerprint] = schema_id
        self._by_id[schema_id] = version
        _log.info(
            "registered %s under subject %s as id %d", version.record_name, subject, schema_id
        )
        return schema_id

    def _fetch(self, schema_id: int) -> dict[str, Any] | None:
        with self._client() as client:
            try:
                return _call(client, "GET", f"/schemas/ids/{schema_id}")
            except SchemaRegistryError as exc:
                if exc.status == 404:
                    _log.warning("registry has no schema with id %d", schema_id)
                    return None
                raise

    def _known(self, schema_id: int, reply: dict[str, Any]) -> SchemaVersion | None:
        """The catalog's version of the schema behind ``schema_id``, if it is ours."""
        if reply.get("schemaType", "AVRO") != "AVRO":
            _log.warning("registry id %d is a %s schema, not Avro", schema_id, reply["schemaType"])
            return None
        fingerprint = _fingerprint(_field(reply, "schema", str))
        version = None if fingerprint is None else self._catalog.by_fingerprint.get(fingerprint)
        if version is None:
            _log.warning("registry id %d holds a schema this build does not know", schema_id)
        return version

    @cached_property
    def _tls(self) -> ssl.SSLContext:
        # Loading the CA bundle is the slow part of a client; do it once.
        return httpx.create_ssl_context()

    @contextmanager
    def _client(self) -> Iterator[httpx.Client]:
        # One short-lived client per batch of calls: lookups are rare and cached,
        # and the codec that owns us has no close hook for a pooled connection.
        with httpx.Client(
            base_url=self._url,
            auth=self._settings.auth(),
            timeout=self._settings.timeout_s,
            headers={"Accept": _ACCEPT},
            verify=self._tls,
        ) as client:
            yield client


def _call(client: httpx.Client, method: str, path: str, **kw: Any) -> dict[str, Any]:
    """One REST call, with httpx and HTTP failures translated into ``SchemaRegistryError``."""
    try:
        response = client.request(method, path, **kw)
    except httpx.TimeoutException as exc:
        raise SchemaRegistryError(f"{method} {path}: timed out: {exc}", retriable=True) from exc
    except httpx.TransportError as exc:
        raise SchemaRegistryError(f"{method} {path}: {exc!r}", retriable=True) from exc
    if response.is_success:
        return _json(response)
    status = response.status_code
    raise SchemaRegistryError(
        f"{method} {path}: HTTP {status}: {_reason(response)}",
        retriable=status >= 500 or status in _RETRIABLE_4XX,
        status=status,
    )


def _json(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError as exc:
        raise SchemaRegistryError(
            f"registry answered with non-JSON: {exc}", retriable=False
        ) from exc
    if not isinstance(body, dict):
        raise SchemaRegistryError("registry answered with a non-object", retriable=False)
    return body


def _reason(response: httpx.Response) -> str:
    """The registry's ``error_code`` and ``message``, or the raw text of the reply."""
    try:
        body = response.json()
    except ValueError:
        return response.text[:200]
    if isinstance(body, dict) and "message" in body:
        return f"{body.get('error_code')} {body['message']}"
    return response.text[:200]


def _field(body: dict[str, Any], name: str, kind: type[T]) -> T:
    value = body.get(name)
    if not isinstance(value, kind) or isinstance(value, bool):
        raise SchemaRegistryError(f"registry reply lacks {kind.__name__} {name!r}", retriable=False)
    return value


def _fingerprint(schema: str) -> int | None:
    """CRC-64-AVRO of the parsing canonical form, or None for text that is not Avro."""
    try:
        canonical = to_parsing_canonical_form(json.loads(schema))
    except (ValueError, TypeError, KeyError, AttributeError):
        return None
    return crc64_avro(canonical.encode("utf-8"))


def codec_for(
    settings: KafkaSettings,
    registry: RegistrySettings | None = None,
    *,
    cat: Catalog | None = None,
) -> Codec:
    """The codec these settings ask for: single-object encoding, or Confluent framing
    with every current schema registered when ``schema_registry_url`` is set.

    ``registry=None`` loads ``GUARDIAN_REGISTRY_*`` only if a registry is used.
    """
    if not settings.schema_registry_url:
        return Codec(max_payload=settings.max_payload_bytes, cat=cat)
    used = cat or catalog()
    ids = RegistrySchemaIds(settings.schema_registry_url, registry or RegistrySettings(), cat=used)
    ids.register_all(used, settings.topic_namespace)
    return Codec(schema_ids=ids, max_payload=settings.max_payload_bytes, cat=used)
