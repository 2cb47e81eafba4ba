"""The emulator's behaviour profile: timings, outcome shares and headers, deterministic under a seed."""

from __future__ import annotations

import base64
import binascii
import math
import os
import random
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

PROFILE_ENV = "AJ_EMULATOR_PROFILE"
"""Environment variable holding a profile as JSON text, or the path of a JSON file."""

DEFAULT_WEBHOOK_SECRET = "whsec_YXNzaXN0YW50LWpvYnMgZW11bGF0b3Igd2ViaG9va3M="
"""The secret webhooks are signed with unless the profile names another (`whsec_` + base64 of the key)."""


class Distribution(BaseModel):
    """A duration distribution in seconds.

    `fixed` uses `value`; `uniform` draws from [min, max]; `lognormal` draws around `median` with shape
    `sigma`, clipped to [min, max].
    """

    model_config = ConfigDict(extra="forbid")

    kind: Literal["fixed", "uniform", "lognormal"] = "uniform"
    value: float = 0.5
    min: float = 0.0
    max: float = 1.0
    median: float = 1.0
    sigma: float = 0.5

    @model_validator(mode="after")
    def _check_bounds(self) -> Distribution:
        if self.min < 0 or self.max < self.min:
            raise ValueError("need 0 <= min <= max")
        return self

    def sample(self, rng: random.Random) -> float:
        """Draw one duration from `rng` (always exactly one draw, so sequences stay aligned)."""
        if self.kind == "fixed":
            rng.random()
            return self.value
        if self.kind == "uniform":
            return rng.uniform(self.min, self.max)
        drawn = rng.lognormvariate(math.log(max(self.median, 1e-9)), self.sigma)
        return min(max(drawn, self.min), self.max)


class Usage(BaseModel):
    """Token numbers reported as usage; text-dependent parts are added on top of these bases."""

    model_config = ConfigDict(extra="forbid")

    prompt_tokens: int = 20
    completion_tokens: int = 10


class WebhookRetry(BaseModel):
    """How a delivery the receiver did not accept (a non-2xx answer, no answer within `timeout_s`, or no
    connection) is tried again: after failed attempt n, wait min(max_s, first_s * factor ** (n - 1)); stop
    after `max_attempts` attempts. The API retries for up to 72 hours; these defaults are short, for tests."""

    model_config = ConfigDict(extra="forbid")

    first_s: float = Field(default=0.2, gt=0)
    factor: float = Field(default=2.0, ge=1)
    max_s: float = Field(default=30.0, gt=0)
    max_attempts: int = Field(default=6, ge=1)
    timeout_s: float = Field(default=5.0, gt=0)


class Profile(BaseModel):
    """How the emulated service behaves. Defaults are fast, for tests."""

    model_config = ConfigDict(extra="forbid")

    seed: int = 0
    run_queued_s: float = 0.05
    run_duration: Distribution = Field(default_factory=lambda: Distribution(kind="uniform", min=0.3, max=1.0))
    run_cancelling_s: float = 0.1
    run_expires_after_s: float = 600.0
    p_run_failed: float = 0.0
    p_run_expired: float = 0.0
    p_run_incomplete: float = 0.0
    response_queued_s: float = 0.05
    response_duration: Distribution = Field(
        default_factory=lambda: Distribution(kind="uniform", min=0.3, max=1.0)
    )
    p_response_failed: float = 0.0
    p_response_incomplete: float = 0.0
    file_index_duration: Distribution = Field(
        default_factory=lambda: Distribution(kind="uniform", min=0.1, max=0.5)
    )
    p_file_failed: float = 0.0
    poll_after_ms: int = 1000
    usage: Usage = Field(default_factory=Usage)
    # Per-minute budgets the x-ratelimit-* headers report (informational: never enforced).
    ratelimit_requests: int = Field(default=10_000, ge=1)
    ratelimit_tokens: int = Field(default=30_000_000, ge=1)
    # Where background responses' end events are POSTed (each URL gets every event), signed with this secret.
    webhook_urls: list[str] = Field(default_factory=list)
    webhook_secret: str = DEFAULT_WEBHOOK_SECRET
    webhook_retry: WebhookRetry = Field(default_factory=WebhookRetry)

    @field_validator("webhook_urls")
    @classmethod
    def _check_urls(cls, urls: list[str]) -> list[str]:
        for url in urls:
            if not url.startswith(("http://", "https://")):
                raise ValueError(f"webhook URL {url!r} is not an http(s) URL")
        return urls

    @field_validator("webhook_secret")
    @classmethod
    def _check_secret(cls, secret: str) -> str:
        try:
            key = base64.b64decode(secret.removeprefix("whsec_"), validate=True)
        except binascii.Error:
            key = b""
        if not secret.startswith("whsec_") or not key:
            raise ValueError("webhook_secret must be 'whsec_' followed by the base64 of the key")
        return secret

    @model_validator(mode="after")
    def _check_shares(self) -> Profile:
        if self.p_run_failed + self.p_run_expired + self.p_run_incomplete > 1:
            raise ValueError("run outcome shares add up to more than 1")
        if self.p_response_failed + self.p_response_incomplete > 1:
            raise ValueError("response outcome shares add up to more than 1")
        return self


def load_profile(path: str | os.PathLike[str] | None = None) -> Profile:
    """Load a profile from `path`, else from AJ_EMULATOR_PROFILE (JSON text or a file path), else defaults."""
    if path is not None:
        return Profile.model_validate_json(Path(path).read_text())
    raw = os.environ.get(PROFILE_ENV, "").strip()
    if not raw:
        return Profile()
    if raw.startswith("{"):
        return Profile.model_validate_json(raw)
    return Profile.model_validate_json(Path(raw).read_text())
