"""The OpenAI client factory. The SDK's own retries are off: errors are classified and retried by
the job machinery, with backoff that honours Retry-After and never holds a worker."""

from __future__ import annotations

import functools

import openai

from worker.settings import Settings, get_settings


def make_openai(settings: Settings) -> openai.OpenAI:
    """A synchronous client from ``settings`` (base URL, key, timeout), without SDK retries."""
    key = settings.openai_api_key.get_secret_value() if settings.openai_api_key else "unset"
    return openai.OpenAI(
        api_key=key, base_url=settings.openai_base_url, timeout=settings.openai_timeout, max_retries=0
    )


@functools.cache
def openai_client() -> openai.OpenAI:
    """This process's client (one connection pool, reused by every task)."""
    return make_openai(get_settings())


def api_base(settings: Settings) -> str:
    """The API's base URL without a trailing slash, for the poll hot path's raw HTTP client."""
    return (settings.openai_base_url or "https://api.openai.com/v1").rstrip("/")


def auth_headers(settings: Settings) -> dict[str, str]:
    """Headers the raw hot-path client sends: the bearer token and the Assistants beta header."""
    key = settings.openai_api_key.get_secret_value() if settings.openai_api_key else "unset"
    return {"Authorization": f"Bearer {key}", "OpenAI-Beta": "assistants=v2", "Accept": "application/json"}
