"""Error classification and the waits a server names (worker.errors)."""

from __future__ import annotations

import httpx2
import openai
import pytest

from schemas.job import JobError
from worker.errors import RateGateClosed, classify, rate_limit_wait, reset_seconds

REQUEST = httpx2.Request("POST", "https://api.example/v1/responses")


def status_error(status: int, body: object = None) -> openai.APIStatusError:
    """The error the SDK raises for an HTTP ``status`` answered with ``body``."""
    response = httpx2.Response(status, request=REQUEST)
    return openai.APIStatusError(f"HTTP {status}", response=response, body=body)


@pytest.mark.parametrize(
    ("raw", "seconds"),
    [
        ("1s", 1.0),
        ("1.5s", 1.5),
        ("120ms", 0.12),
        ("6m0s", 360.0),
        ("1h2m3s", 3723.0),
        (" 2s ", 2.0),
        ("5", None),
        ("1x", None),
        ("soon", None),
        ("", None),
    ],
)
def test_a_rate_limit_reset_header_is_read_in_seconds(raw: str, seconds: float | None) -> None:
    assert reset_seconds(raw) == (pytest.approx(seconds) if seconds is not None else None)


@pytest.mark.parametrize(
    ("status", "headers", "wait"),
    [
        (429, {"retry-after-ms": "1500", "retry-after": "2"}, 1.5),
        (429, {"retry-after": "3"}, 3.0),
        (429, {"x-ratelimit-reset-requests": "2s", "x-ratelimit-reset-tokens": "6m0s"}, 360.0),
        (429, {"x-ratelimit-reset-tokens": "120ms"}, 0.12),
        (429, {"x-ratelimit-reset-requests": "later"}, None),
        (429, {}, None),
        (429, None, None),
        (503, {"retry-after": "3"}, None),
    ],
)
def test_only_a_429_names_a_rate_limit_wait_from_retry_after_or_the_later_reset(
    status: int, headers: dict[str, str] | None, wait: float | None
) -> None:
    assert rate_limit_wait(status, headers) == (pytest.approx(wait) if wait is not None else None)


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (
            RateGateClosed("POST /v1/responses", 2.0),
            JobError(
                code="rate_limited",
                message="POST /v1/responses asked to wait 2.00 s more (Retry-After)",
                retryable=True,
            ),
        ),
        (
            openai.APITimeoutError(REQUEST),
            JobError(code="timeout", message="the API did not answer in time", retryable=True),
        ),
        (
            status_error(404, {"error": {"message": "No assistant found with id 'asst_x'.", "code": None}}),
            JobError(code="not_found", message="No assistant found with id 'asst_x'.", retryable=False),
        ),
        (
            status_error(400, {"error": {"message": "Bad value", "code": "invalid_value"}}),
            JobError(code="invalid_value", message="Bad value", retryable=False),
        ),
        (status_error(429), JobError(code="rate_limited", message="HTTP 429 from the API", retryable=True)),
        (status_error(409), JobError(code="conflict", message="HTTP 409 from the API", retryable=True)),
        (
            status_error(502, "<html>bad gateway</html>"),
            JobError(code="http_502", message="HTTP 502 from the API", retryable=True),
        ),
        (status_error(401), JobError(code="unauthorized", message="HTTP 401 from the API", retryable=False)),
        (ValueError("boom"), JobError(code="internal_error", message="ValueError: boom", retryable=False)),
    ],
)
def test_each_error_gets_a_stable_code_a_readable_message_and_whether_a_retry_could_help(
    exc: BaseException, expected: JobError
) -> None:
    assert classify(exc) == expected


def test_a_connection_error_is_retryable_and_says_the_api_could_not_be_reached() -> None:
    error = classify(openai.APIConnectionError(request=REQUEST))
    assert (error.code, error.retryable) == ("connection_error", True)
    assert error.message.startswith("could not reach the API")
