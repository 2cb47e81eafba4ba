"""The emulator's behaviour profile: timings, outcome shares and headers, deterministic under a seed."""

from __future__ import annotations

import math
import os
import random
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

PROFILE_ENV = "AJ_EMULATOR_PROFILE"
"""Environment variable holding a profile as JSON text, or the path of a JSON file."""


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
