"""The root error of Guardian Cluster and the codec's typed decode error."""

from __future__ import annotations

from enum import StrEnum


class GuardianError(Exception):
    """Root of every error the project raises.

    ``retriable`` tells a caller whether trying the same thing again can help;
    callers test the flag instead of listing classes.
    """

    retriable: bool = False


class DecodeReason(StrEnum):
    """Why a payload could not be decoded; closed set, used as a metric label."""

    EMPTY = "empty"
    BAD_MAGIC = "bad_magic"
    UNKNOWN_SCHEMA = "unknown_schema"
    TRUNCATED = "truncated"
    TRAILING_BYTES = "trailing_bytes"
    OVERSIZE = "oversize"
    INVALID_UTF8 = "invalid_utf8"
    WRONG_RECORD = "wrong_record"
    INVALID_VALUE = "invalid_value"


class DecodeError(GuardianError):
    """A payload is not a valid event; retrying the same bytes never helps."""

    retriable = False

    def __init__(self, reason: DecodeReason, detail: str) -> None:
        super().__init__(f"{reason.value}: {detail}")
        self.reason = reason
        self.detail = detail


class EncodeError(GuardianError):
    """A model could not be written with its schema (a programming error)."""

    retriable = False
