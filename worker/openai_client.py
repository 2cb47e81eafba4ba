"""The OpenAI client factory. The SDK's own retries are off: errors are classified and retried by
the job machinery, with backoff that honours Retry-After and never holds a worker."""

from __future__ import annotations

import functools

import openai

from worker.rate_gate import RateGate
from worker.settings import Settings, get_settings


def make_openai(settings: Settings, gate: RateGate | None = None) -> openai.OpenAI:
    """A synchronous client from ``settings`` (base URL, key, timeout), without SDK retries; with a
    ``gate``, every request honours the Retry-After any worker was given for its endpoint."""
    key = settings.openai_api_key.get_secret_value() if settings.openai_api_key else "unset"
    http = None
    if gate is not None:
        http = openai.DefaultHttpxClient(event_hooks={"request": [gate.check], "response": [gate.record]})
    return openai.OpenAI(
        api_key=key,
        base_url=settings.openai_base_url,
        timeout=settings.openai_timeout,
        max_retries=0,
        http_client=http,
    )


@functools.cache
def openai_client() -> openai.OpenAI:
    """This process's client (one connection pool, reused by every task), behind the shared rate gate."""
    from worker.connections import store

    return make_openai(get_settings(), RateGate(store().redis))


def api_base(settings: Settings) -> str:
    """The API's base URL without a trailing slash, for the poll hot path's raw HTTP client."""
    return (settings.openai_base_url or "https://api.openai.com/v1").rstrip("/")


def auth_headers(settings: Settings) -> dict[str, str]:
    """Headers the raw hot-path client sends: the bearer token and the Assistants beta header."""
    key = settings.openai_api_key.get_secret_value() if settings.openai_api_key else "unset"
    return {"Authorization": f"Bearer {key}", "OpenAI-Beta": "assistants=v2", "Accept": "application/json"}
