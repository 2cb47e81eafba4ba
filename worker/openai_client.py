"""The OpenAI client factory. The SDK's own retries are off: errors are classified and retried by
the job machinery, with backoff that honours Retry-After and never holds a worker."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import httpx2
import openai

from worker.metrics import ApiCounts, CountingTransport, process_counts
from worker.rate_gate import RateGate
from worker.settings import Settings, get_settings

# The SDK's own connection limits, for the transport we hand it (a given transport replaces its default).
_LIMITS = httpx2.Limits(max_connections=1000, max_keepalive_connections=100)


def make_openai(
    settings: Settings, gate: RateGate | None = None, counts: ApiCounts | None = None
) -> openai.OpenAI:
    """A synchronous client from ``settings`` (base URL, key, timeout), without SDK retries. With a
    ``gate``, every request honours the Retry-After any worker was given for its endpoint; with
    ``counts``, every request is counted for the metrics."""
    key = settings.openai_api_key.get_secret_value() if settings.openai_api_key else "unset"
    http = None
    if gate is not None or counts is not None:
        hooks: dict[str, list[Callable[..., Any]]] = (
            {"request": [gate.check], "response": [gate.record]} if gate else {}
        )
        transport = CountingTransport(httpx2.HTTPTransport(limits=_LIMITS), counts) if counts else None
        http = openai.DefaultHttpxClient(event_hooks=hooks, transport=transport)
    return openai.OpenAI(
        api_key=key,
        base_url=settings.openai_base_url,
        timeout=request_timeout(settings),
        max_retries=0,
        http_client=http,
    )


@functools.cache
def rate_gate() -> RateGate:
    """This process's view of the shared rate gate (one subscription to its announcements)."""
    from worker.connections import store

    return RateGate(store().gates)


@functools.cache
def openai_client() -> openai.OpenAI:
    """This process's client (one connection pool, reused by every task), behind the shared rate gate
    and counted for the metrics."""
    return make_openai(get_settings(), rate_gate(), process_counts())


def warm_imports() -> None:
    """Import the SDK's resource modules now. The SDK imports them lazily, on first use; in a task on a
    loaded host that first import can take seconds and be cut off by the soft time limit mid-import. Done
    once in the worker's main process, every forked pool process has them already."""
    client = openai.OpenAI(api_key="warm-up", base_url="http://127.0.0.1:9/v1", max_retries=0)
    for resource in ("beta", "responses", "conversations", "vector_stores", "files"):
        getattr(client, resource)
    client.beta.threads.runs  # noqa: B018 (the attribute access is the import)
    client.beta.threads.messages  # noqa: B018
    client.beta.assistants  # noqa: B018
    client.vector_stores.file_batches  # noqa: B018
    client.close()


def request_timeout(settings: Settings) -> float:
    """Seconds one API request of a task may take: `Settings.openai_timeout`, but well inside the task's
    soft time limit, so a slow API surfaces as a retryable timeout (retried through the schedule with
    backoff) rather than as a task cut off half-way."""
    return max(min(settings.openai_timeout, settings.task_soft_time_limit * 0.4), 1.0)


def api_base(settings: Settings) -> str:
    """The API's base URL without a trailing slash, for the poll hot path's raw HTTP client."""
    return (settings.openai_base_url or "https://api.openai.com/v1").rstrip("/")


def auth_headers(settings: Settings) -> dict[str, str]:
    """Headers the raw hot-path client sends: the bearer token and the Assistants beta header."""
    key = settings.openai_api_key.get_secret_value() if settings.openai_api_key else "unset"
    return {"Authorization": f"Bearer {key}", "OpenAI-Beta": "assistants=v2", "Accept": "application/json"}
