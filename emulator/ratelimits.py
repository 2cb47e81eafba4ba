"""The `x-ratelimit-*` headers every API answer carries: per-minute request and token budgets.

The budgets refill continuously, as the API reports them: `remaining` is what is left now and `reset` is the
time until the budget is full again, written as the API writes durations ("20ms", "8.64s", "6m0s").
They are informational: the emulator never refuses a request for them; 429s come from the faults.
"""

from __future__ import annotations

import math

Headers = list[tuple[bytes, bytes]]


def duration(seconds: float) -> str:
    """A duration in the API's style: "0s", "20ms", "8.64s", "6m0s", "1m30.5s"."""
    if seconds <= 0:
        return "0s"
    if seconds < 1:
        return f"{max(1, round(seconds * 1000))}ms"
    minutes, rest = divmod(seconds, 60)
    text = f"{rest:.3f}".rstrip("0").rstrip(".") + "s"
    return f"{int(minutes)}m{text}" if minutes else text


class _Bucket:
    """A budget of `limit` a minute that refills continuously."""

    def __init__(self) -> None:
        self.left: float | None = None  # None: full, at whatever limit is in force
        self.at = 0.0

    def take(self, now: float, amount: float, limit: int) -> tuple[int, float]:
        """Spend `amount` at `now`; (what is left, seconds until full again). Never below zero."""
        rate = limit / 60
        left = limit if self.left is None else min(limit, self.left + (now - self.at) * rate)
        left = max(0.0, left - amount)
        self.left, self.at = left, now
        return int(left), (limit - left) / rate if rate else 0.0


class RateLimits:
    """The request and token budgets of the one API key the emulator serves."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        """Both budgets full again."""
        self.requests = _Bucket()
        self.tokens = _Bucket()

    def charge(self, now: float, tokens: int, request_limit: int, token_limit: int) -> Headers:
        """Spend one request and `tokens` tokens; the six headers for the answer."""
        requests_left, requests_reset = self.requests.take(now, 1, request_limit)
        tokens_left, tokens_reset = self.tokens.take(now, tokens, token_limit)
        return _headers(request_limit, requests_left, requests_reset, token_limit, tokens_left, tokens_reset)

    def exhausted(self, now: float, wait_s: float, request_limit: int, token_limit: int) -> Headers:
        """The headers of a 429: no request left until `wait_s` from now."""
        tokens_left, tokens_reset = self.tokens.take(now, 0, token_limit)
        return _headers(request_limit, 0, wait_s, token_limit, tokens_left, tokens_reset)


def _headers(
    request_limit: int,
    requests_left: int,
    requests_reset: float,
    token_limit: int,
    tokens_left: int,
    tokens_reset: float,
) -> Headers:
    # Every API answer carries these, the run-retrieve hot path included: bytes formatting keeps them cheap.
    return [
        (b"x-ratelimit-limit-requests", b"%d" % request_limit),
        (b"x-ratelimit-remaining-requests", b"%d" % requests_left),
        (b"x-ratelimit-reset-requests", duration(requests_reset).encode()),
        (b"x-ratelimit-limit-tokens", b"%d" % token_limit),
        (b"x-ratelimit-remaining-tokens", b"%d" % tokens_left),
        (b"x-ratelimit-reset-tokens", duration(tokens_reset).encode()),
    ]


def estimated_tokens(body: bytes, content_type: bytes) -> int:
    """What the API would charge a request up front: about one token per four bytes of a JSON body."""
    if not body or not content_type.startswith(b"application/json"):
        return 0
    return math.ceil(len(body) / 4)
