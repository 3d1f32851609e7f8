"""The gateway's settings (``GUARDIAN_GATEWAY_*``)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class GatewaySettings(BaseSettings):
    """``guardian serve`` (``GUARDIAN_GATEWAY_*``)."""

    model_config = SettingsConfigDict(env_prefix="GUARDIAN_GATEWAY_", frozen=True)

    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)
    models: str = "guardian"
    """Comma-separated model names callers may ask for; every one is the pipeline."""
    keys_file: Path = Path(".run/gateway.keys")
    """``<sha256 hex of the key> <tenant>`` per line (``guardian keys add`` writes it)."""
    max_in_flight: int = Field(default=256, ge=1)
    """Requests waiting for their answer at once; past it a request gets 429."""
    timeout_s: float = Field(default=120.0, gt=0)
    """The request's deadline in the pipeline; the caller gets 504 after it."""
    max_body_bytes: int = Field(default=1_048_576, ge=1024)
    keepalive_s: float = Field(default=10.0, gt=0)
    """A streaming request sends a keep-alive comment this often while it is refined;
    its headers go out on the first one, so an early rejection still gets its status."""
    trail_rate: float = Field(default=2.0, gt=0)
    """Trail lookups per second per tenant (a token bucket, with ``trail_burst``)."""
    trail_burst: int = Field(default=10, ge=1)
    index_entries: int = Field(default=100_000, ge=1)
    """Recent requests the trail endpoint can find (submitted here or answered anywhere)."""
    operators: str = "ops"
    """Comma-separated tenants whose keys open the dashboard and any tenant's trail."""
    strict: bool = False
    """Answer a request no attempt passed with 422 rather than 200 and status failed
    (a caller can ask per request with ``X-Guardian-Strict: true``)."""

    def model_names(self) -> list[str]:
        return [m.strip() for m in self.models.split(",") if m.strip()]

    def operator_tenants(self) -> set[str]:
        return {t.strip() for t in self.operators.split(",") if t.strip()}
