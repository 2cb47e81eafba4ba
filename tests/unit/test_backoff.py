"""The backoff policy, a pure function."""

from __future__ import annotations

import random

from worker.backoff import PollPolicy, compute_delay, error_delay

POLICY = PollPolicy(first=1.0, factor=2.0, cap=8.0, jitter=0.25)


def test_delays_grow_by_the_factor_up_to_the_cap() -> None:
    no_jitter = PollPolicy(first=1.0, factor=2.0, cap=8.0, jitter=0.0)
    assert [compute_delay(n, no_jitter) for n in range(6)] == [1.0, 2.0, 4.0, 8.0, 8.0, 8.0]


def test_jitter_only_shortens_by_at_most_its_share() -> None:
    rng = random.Random(1)
    delays = [compute_delay(3, POLICY, rng=rng) for _ in range(500)]
    assert min(delays) >= 8.0 * 0.75 and max(delays) <= 8.0
    assert len(set(delays)) > 400  # polls do not march in step


def test_server_poll_after_and_retry_after_are_floors() -> None:
    assert compute_delay(0, POLICY, poll_after=1.5) >= 1.5
    assert compute_delay(0, POLICY, retry_after=7.0) >= 7.0
    assert error_delay(1, POLICY, retry_after=12.0) >= 12.0


def test_error_backoff_doubles_and_is_capped() -> None:
    flat = PollPolicy(first=1.0, jitter=0.0)
    assert [error_delay(n, flat) for n in (1, 2, 3, 10)] == [1.0, 2.0, 4.0, 30.0]
