"""The codec against expected bytes, crafted bad payloads and random bytes."""

from __future__ import annotations

import struct
from datetime import UTC, datetime

import pytest
from fastavro.schema import fingerprint as fastavro_fingerprint
from hypothesis import given
from hypothesis import strategies as st

from schemas.catalog import MODELS, catalog, crc64_avro
from schemas.codec import Codec, StaticSchemaIds
from schemas.envelope import Event
from schemas.errors import DecodeError, DecodeReason
from schemas.request_events import FeedbackGiven, RequestSubmitted, ResponseDelivered
from tests.samples import sample

FEEDBACK = FeedbackGiven(
    event_id="e1",
    request_id="r1",
    occurred_at=datetime.fromtimestamp(1, tz=UTC),
    kind="explicit",
    rating=0.5,
)
# Avro binary of FEEDBACK, written out by hand from the specification.
FEEDBACK_BODY = bytes.fromhex(
    "04"
    + b"e1".hex()  # event_id: zigzag length 2, bytes
    + "04"
    + b"r1".hex()  # request_id
    + "d00f"  # occurred_at: 1000 ms, zigzag 2000, varint
    + "00"  # config_version 0
    + "00"  # variant: union branch 0 (null)
    + "10"
    + b"explicit".hex()  # kind
    + "02"
    + "000000000000e03f"  # rating: branch 1, double 0.5 little-endian
    + "00"
    + "00"
    + "00"  # signal, comment, user_id: null
)


def fp(name: str) -> int:
    return catalog().current[name].fingerprint


def test_crc64_avro_matches_the_specification_vector_and_fastavro() -> None:
    assert crc64_avro(b'"null"') == 7195948357588979594
    for version in catalog().current.values():
        expected = fastavro_fingerprint(version.canonical, "CRC-64-AVRO")
        assert struct.pack("<Q", version.fingerprint).hex() == expected


def test_single_object_encoding_bytes() -> None:
    data = Codec().encode(FEEDBACK)
    assert data[:2] == b"\xc3\x01"
    assert data[2:10] == struct.pack("<Q", fp("FeedbackGiven"))
    assert data[10:] == FEEDBACK_BODY


def test_confluent_framing_bytes() -> None:
    ids = StaticSchemaIds({42: catalog().current["FeedbackGiven"]})
    codec = Codec(schema_ids=ids)
    data = codec.encode(FEEDBACK)
    assert data == b"\x00\x00\x00\x00\x2a" + FEEDBACK_BODY
    assert codec.decode(data, FeedbackGiven) == FEEDBACK


def _frame(body: bytes, name: str = "FeedbackGiven") -> bytes:
    return b"\xc3\x01" + struct.pack("<Q", fp(name)) + body


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", DecodeReason.EMPTY),
        (b"\x00\x01\x02", DecodeReason.BAD_MAGIC),
        (b"{'json': true}", DecodeReason.BAD_MAGIC),
        (b"\xc3\x01\x00\x00", DecodeReason.TRUNCATED),
        (b"\xc3\x01" + b"\x11" * 8 + FEEDBACK_BODY, DecodeReason.UNKNOWN_SCHEMA),
        (_frame(FEEDBACK_BODY[:-4]), DecodeReason.TRUNCATED),
        (_frame(FEEDBACK_BODY[:3]), DecodeReason.TRUNCATED),
        (_frame(FEEDBACK_BODY + b"\x00"), DecodeReason.TRAILING_BYTES),
        (_frame(b"\x04\xff\xfe" + FEEDBACK_BODY[3:]), DecodeReason.INVALID_UTF8),
        (_frame(FEEDBACK_BODY.replace(b"explicit", b"explicat")), DecodeReason.INVALID_VALUE),
        (_frame(b"\x00" * 2_000_000), DecodeReason.OVERSIZE),
    ],
    ids=[
        "empty",
        "bad-magic",
        "json",
        "short-header",
        "unknown-fingerprint",
        "truncated-tail",
        "truncated-head",
        "trailing",
        "utf8",
        "invalid-value",
        "oversize",
    ],
)
def test_decode_errors_have_a_reason(data: bytes, reason: DecodeReason) -> None:
    with pytest.raises(DecodeError) as info:
        Codec().decode(data, FeedbackGiven)
    assert info.value.reason is reason
    assert info.value.retriable is False


def test_decoding_the_wrong_record_type_is_an_error() -> None:
    data = Codec().encode(FEEDBACK)
    with pytest.raises(DecodeError) as info:
        Codec().decode(data, RequestSubmitted)
    assert info.value.reason is DecodeReason.WRONG_RECORD


def test_unknown_registry_id_is_an_error() -> None:
    codec = Codec(schema_ids=StaticSchemaIds({}))
    with pytest.raises(DecodeError) as info:
        codec.decode(b"\x00\x00\x00\x00\x07" + FEEDBACK_BODY, FeedbackGiven)
    assert info.value.reason is DecodeReason.UNKNOWN_SCHEMA


def test_payload_limit_is_configurable() -> None:
    data = Codec().encode(sample(ResponseDelivered))
    assert Codec(max_payload=len(data)).decode(data, ResponseDelivered)
    with pytest.raises(DecodeError):
        Codec(max_payload=len(data) - 1).decode(data, ResponseDelivered)


def decodes_or_typed_error(data: bytes) -> Event | DecodeReason:
    """Decode ``data``: an event, or the reason of the typed error (anything else escapes)."""
    try:
        return Codec().decode_any(data)
    except DecodeError as exc:
        return exc.reason


@given(st.binary(max_size=300))
def test_random_bytes_raise_only_decode_errors(data: bytes) -> None:
    outcome = decodes_or_typed_error(data)
    assert isinstance(outcome, DecodeReason)


@given(st.sampled_from(MODELS), st.binary(min_size=1, max_size=200))
def test_random_bodies_behind_a_valid_header_raise_only_decode_errors(
    model: type[Event], body: bytes
) -> None:
    outcome = decodes_or_typed_error(_frame(body, model.record_name))
    assert isinstance(outcome, DecodeReason | Event)


@given(st.sampled_from(MODELS), st.data())
def test_flipped_bytes_of_valid_records_raise_only_decode_errors(
    model: type[Event], data: st.DataObject
) -> None:
    encoded = bytearray(Codec().encode(sample(model)))
    index = data.draw(st.integers(min_value=10, max_value=len(encoded) - 1))
    encoded[index] ^= data.draw(st.integers(min_value=1, max_value=255))
    outcome = decodes_or_typed_error(bytes(encoded))
    assert isinstance(outcome, DecodeReason | Event)


@pytest.mark.parametrize("model", MODELS, ids=lambda m: m.record_name)
def test_no_truncation_of_a_valid_record_decodes(model: type[Event]) -> None:
    encoded = Codec().encode(sample(model))
    for end in range(10, len(encoded)):
        outcome = decodes_or_typed_error(encoded[:end])
        assert isinstance(outcome, DecodeReason), f"{model.record_name} cut at {end} decoded"
