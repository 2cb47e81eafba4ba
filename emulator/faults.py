"""Fault injection switched at run time: latency, 429 with Retry-After, 5xx, dropped connections, stalls.

`rate_drop` drops the connection before the request is handled (nothing happened); `rate_drop_after` lets
the request take effect and then drops the connection instead of sending the answer (the object exists
although the client saw a connection error).
"""

from __future__ import annotations

import random

from pydantic import BaseModel, ConfigDict, Field, model_validator


class Faults(BaseModel):
    """Which faults to inject into `/v1/...` requests, and at what rates (0..1 each)."""

    model_config = ConfigDict(extra="forbid")

    latency_ms: float = 0.0
    rate_429: float = 0.0
    retry_after_s: float = 1.0
    rate_500: float = 0.0
    rate_503: float = 0.0
    rate_drop: float = 0.0
    rate_drop_after: float = 0.0
    rate_stall: float = 0.0
    stall_s: float = 30.0
    # Only requests whose route template equals an entry, or whose path contains one, are affected.
    paths: list[str] | None = None
    methods: list[str] | None = None
    seed: int = 0

    @property
    def rates(self) -> tuple[tuple[str, float], ...]:
        """(fault name, rate) in the order one roll is matched against them; new faults go last so that a
        seed keeps choosing the same requests for the older ones."""
        return (
            ("429", self.rate_429),
            ("500", self.rate_500),
            ("503", self.rate_503),
            ("drop", self.rate_drop),
            ("stall", self.rate_stall),
            ("drop_after", self.rate_drop_after),
        )

    @model_validator(mode="after")
    def _check_rates(self) -> Faults:
        rates = [rate for _, rate in self.rates]
        if any(r < 0 for r in rates) or sum(rates) > 1:
            raise ValueError("fault rates must be >= 0 and add up to at most 1")
        return self

    def applies(self, method: str, path: str, template: str) -> bool:
        """Whether this request is one the faults target."""
        if self.methods is not None and method not in self.methods:
            return False
        if self.paths is None:
            return True
        return any(p == template or p in path for p in self.paths)

    @property
    def active(self) -> bool:
        """Whether any fault is switched on."""
        return self.latency_ms > 0 or any(rate for _, rate in self.rates)


class FaultInjector:
    """Holds the current faults and the RNG (its own, seeded) that decides which request gets which."""

    def __init__(self) -> None:
        self.set(Faults())

    def set(self, faults: Faults) -> None:
        """Switch to `faults`, restarting the fault RNG from their seed."""
        self.faults = faults
        self.rng = random.Random(faults.seed)

    def decide(self, method: str, path: str, template: str) -> str | None:
        """The fault for this request: "429", "500", "503", "drop", "stall", "drop_after" or None."""
        faults = self.faults
        if not faults.active or not faults.applies(method, path, template):
            return None
        roll = self.rng.random()
        for name, rate in faults.rates:
            if roll < rate:
                return name
            roll -= rate
        return None


class WebhookFaults(BaseModel):
    """Faults on webhook deliveries. A delivery is one event to one URL; each rate is drawn for each delivery,
    independently of the others, from the faults' own RNG restarted from `seed` when they are set."""

    model_config = ConfigDict(extra="forbid")

    # Added before every delivery's first attempt.
    delay_s: float = Field(default=0.0, ge=0)
    # Never sent.
    rate_drop: float = Field(default=0.0, ge=0, le=1)
    # Sent a second time (same webhook-id and body, fresh timestamp) once the first delivery has ended.
    rate_duplicate: float = Field(default=0.0, ge=0, le=1)
    # Held back (after delay_s) until the first attempts of `reorder_after` other deliveries have ended
    # (answered or failed), or for at most `reorder_max_s`, so later events overtake it.
    rate_reorder: float = Field(default=0.0, ge=0, le=1)
    reorder_after: int = Field(default=1, ge=1)
    reorder_max_s: float = Field(default=5.0, ge=0)
    # Every attempt signed with a wrong key: the SDK's unwrap raises InvalidWebhookSignatureError.
    rate_bad_signature: float = Field(default=0.0, ge=0, le=1)
    seed: int = 0
