"""The backoff policy: a pure function of the attempt number and what the server asked for."""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from worker.settings import Settings

RETRY_AFTER_MARGIN_S = 0.05
"""Added to a server's Retry-After, so clock granularity never puts a retry a hair before it."""


@dataclass(frozen=True)
class PollPolicy:
    """Exponential backoff with jitter: ``first * factor**attempt``, capped, minus up to ``jitter`` of it."""

    first: float = 1.0
    factor: float = 1.5
    cap: float = 2.0
    jitter: float = 0.2


def policy_of(settings: Settings) -> PollPolicy:
    """The poll policy the settings give."""
    return PollPolicy(settings.poll_first, settings.poll_factor, settings.poll_cap, settings.poll_jitter)


def compute_delay(
    attempt: int,
    policy: PollPolicy,
    *,
    poll_after: float | None = None,
    retry_after: float | None = None,
    rng: random.Random | None = None,
) -> float:
    """Seconds to wait before poll number ``attempt`` (0-based).

    Never sooner than the server's ``openai-poll-after-ms`` (``poll_after``, seconds) nor before a
    429's ``Retry-After`` (``retry_after``, seconds): those floors apply after the jitter.
    """
    base = min(policy.cap, policy.first * policy.factor ** max(attempt, 0))
    delay = base * (1.0 - policy.jitter * (rng or random).random())
    return max(delay, poll_after or 0.0, _floor(retry_after))


def error_delay(
    errors: int, policy: PollPolicy, *, retry_after: float | None = None, rng: random.Random | None = None
) -> float:
    """Seconds to wait after the ``errors``-th retryable error in a row: doubling from the first
    poll delay up to 30 s, jittered, and never before ``retry_after``."""
    base = min(30.0, policy.first * 2.0 ** max(errors - 1, 0))
    delay = base * (1.0 - policy.jitter * (rng or random).random())
    return max(delay, _floor(retry_after))


def _floor(retry_after: float | None) -> float:
    return retry_after + RETRY_AFTER_MARGIN_S if retry_after else 0.0
