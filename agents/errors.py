"""Errors of the decision layer and of the ports it declares (LLM, embedder)."""

from __future__ import annotations

from schemas.errors import GuardianError


class ModelError(GuardianError):
    """A model call failed. ``kind`` is a closed label for metrics and events."""

    kind = "model_error"
    retriable = False


class ModelTimeout(ModelError):
    kind = "timeout"
    retriable = True


class ModelRateLimited(ModelError):
    kind = "rate_limited"
    retriable = True

    def __init__(self, message: str, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class ModelUnavailable(ModelError):
    """Connection refused, 5xx, a closed circuit: another try may succeed."""

    kind = "unavailable"
    retriable = True


class ModelBadResponse(ModelError):
    """The service answered with something that is not a completion."""

    kind = "bad_response"
    retriable = True


class ModelRejected(ModelError):
    """The service refused the request itself (4xx); retrying cannot help."""

    kind = "rejected"
    retriable = False


class ModelNotAllowed(ModelError):
    """A model was called where none may be (audit replay)."""

    kind = "not_allowed"
    retriable = False
