"""Error classification: retryable (429, 408, 409, 5xx, connection, timeout) or permanent."""

from __future__ import annotations

import openai

from schemas.job import JobError

RETRYABLE_STATUS = frozenset({408, 409, 429})


def is_retryable_status(status: int) -> bool:
    """True for HTTP statuses worth retrying: 408, 409, 429 and every 5xx."""
    return status in RETRYABLE_STATUS or status >= 500


def classify(exc: BaseException) -> JobError:
    """A `JobError` for an exception raised while talking to the API: a stable code, a message a
    person can act on (the API's own message when it gave one) and whether a retry could help."""
    wait = getattr(exc, "wait", None)
    if isinstance(wait, float):  # the shared rate gate (worker.rate_gate) held the request back
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


def _api_message(exc: openai.APIStatusError) -> str:
    body = exc.body
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict) and inner.get("message"):
            return str(inner["message"])
    return f"HTTP {exc.status_code} from the API"


def _api_code(exc: openai.APIStatusError) -> str | None:
    body = exc.body
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict) and inner.get("code"):
            return str(inner["code"])
    return None


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


def retry_after_of(exc: BaseException) -> float | None:
    """The Retry-After an API error carried (or the shared rate gate's wait), in seconds, or None."""
    wait = getattr(exc, "wait", None)
    if isinstance(wait, float):
        return wait
    response = getattr(exc, "response", None)
    return retry_after_seconds(getattr(response, "headers", None))
