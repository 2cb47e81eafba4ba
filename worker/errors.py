"""Error classification: retryable (429, 408, 409, 5xx, connection, timeout) or permanent, and how long
the server asked us to wait."""

from __future__ import annotations

import re

import openai

from schemas.job import JobError

RETRYABLE_STATUS = frozenset({408, 409, 429})


class RateGateClosed(openai.OpenAIError):
    """The endpoint asked every worker to wait (a shared Retry-After); ``wait`` seconds are left. Nothing
    was sent."""

    def __init__(self, route: str, wait: float):
        super().__init__(f"{route} asked to wait {wait:.2f} s more (Retry-After)")
        self.route = route
        self.wait = wait


def is_retryable_status(status: int) -> bool:
    """True for HTTP statuses worth retrying: 408, 409, 429 and every 5xx."""
    return status in RETRYABLE_STATUS or status >= 500


def classify(exc: BaseException) -> JobError:
    """A `JobError` for an exception raised while talking to the API: a stable code, a message a
    person can act on (the API's own message when it gave one) and whether a retry could help."""
    if isinstance(exc, RateGateClosed):
        return JobError(code="rate_limited", message=str(exc), retryable=True)
    if isinstance(exc, openai.APITimeoutError):
        return JobError(code="timeout", message="the API did not answer in time", retryable=True)
    if isinstance(exc, openai.APIConnectionError):
        return JobError(code="connection_error", message=f"could not reach the API: {exc}", retryable=True)
    if isinstance(exc, openai.APIStatusError):
        status = exc.status_code
        message = _api_message(exc)
        code = _api_code(exc) or _STATUS_CODES.get(status, f"http_{status}")
        return JobError(code=code, message=message, retryable=is_retryable_status(status))
    return JobError(code="internal_error", message=f"{type(exc).__name__}: {exc}", retryable=False)


_STATUS_CODES = {
    400: "invalid_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    408: "timeout",
    409: "conflict",
    429: "rate_limited",
}


def _api_error(exc: openai.APIStatusError) -> dict[str, object]:
    body = exc.body
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict):
            return inner
    return {}


def _api_message(exc: openai.APIStatusError) -> str:
    message = _api_error(exc).get("message")
    return str(message) if message else f"HTTP {exc.status_code} from the API"


def _api_code(exc: openai.APIStatusError) -> str | None:
    code = _api_error(exc).get("code")
    return str(code) if code else None


_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|h|m|s)")
_UNITS = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}


def reset_seconds(raw: str) -> float | None:
    """Seconds in an ``x-ratelimit-reset-*`` value (``1s``, ``6m0s``, ``120ms``); None if unreadable."""
    parts = _DURATION_PART.findall(raw.strip())
    if not parts or "".join(n + u for n, u in parts) != raw.strip():
        return None
    return sum(float(n) * _UNITS[u] for n, u in parts)


def retry_after_seconds(headers: object) -> float | None:
    """Seconds a 429/503 asked us to wait (``retry-after-ms`` or ``retry-after``), or None."""
    get = getattr(headers, "get", None)
    if get is None:
        return None
    for name, scale in (("retry-after-ms", 0.001), ("retry-after", 1.0)):
        raw = get(name)
        if raw:
            try:
                return float(raw) * scale
            except ValueError:
                continue
    return None


def rate_limit_wait(status: int, headers: object) -> float | None:
    """For a 429: how long the server says the limit lasts (``Retry-After``, else the later of the
    ``x-ratelimit-reset-requests`` / ``-tokens`` headers); None for anything else or when it does not say.

    A 429 that names its wait means "later", not "broken": it is waited out without spending a retry."""
    if status != 429:
        return None
    wait = retry_after_seconds(headers)
    if wait:
        return wait
    get = getattr(headers, "get", None)
    if get is None:
        return None
    raws = [get(h) for h in ("x-ratelimit-reset-requests", "x-ratelimit-reset-tokens")]
    known = [r for r in (reset_seconds(str(raw)) for raw in raws if raw) if r]
    return max(known) if known else None


def retry_after_of(exc: BaseException) -> float | None:
    """The Retry-After an API error carried (or the shared rate gate's wait), in seconds, or None."""
    if isinstance(exc, RateGateClosed):
        return exc.wait
    response = getattr(exc, "response", None)
    return retry_after_seconds(getattr(response, "headers", None))


def rate_limit_wait_of(exc: BaseException) -> float | None:
    """The wait a rate-limited API error named (see `rate_limit_wait`), or the shared gate's wait."""
    if isinstance(exc, RateGateClosed):
        return exc.wait
    if isinstance(exc, openai.APIStatusError):
        return rate_limit_wait(exc.status_code, exc.response.headers)
    return None
