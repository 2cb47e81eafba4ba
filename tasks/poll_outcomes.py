"""What every poll handler decides the same way: the deadline rule, reading the server's poll hint,
and turning an HTTP or connection error into "poll again after a backoff" or "hand the job over".

Shared by the run poll (`tasks.run_poll`) and the file-batch poll (`tasks.index_poll`), so both follow
one backoff and one deadline rule.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import orjson

from worker.backoff import error_delay
from worker.errors import is_retryable_status, rate_limit_wait, retry_after_seconds
from worker.poller import Again, Handoff, Outcome, PollContext
from worker.polls import BatchPoll, RunPoll

Supervised = RunPoll | BatchPoll
"""An entry that polls remote work with a deadline and counts its errors."""

DEADLINE_GRACE_S = 30.0
"""How long past its deadline a job waits for the remote cancel to take before it ends regardless."""


def past_deadline(
    job_id: str, entry: Supervised, *, cancel: str, finish: str, now: float | None = None
) -> Outcome | None:
    """The deadline rule: past the deadline send ``cancel`` once; past it plus the grace, end the job via
    ``finish`` with ``deadline_exceeded``. None while the job is within its deadline."""
    now = time.time() if now is None else now
    if entry.deadline and now > entry.deadline:
        if not entry.cancelling:
            return Handoff(cancel, [job_id, "deadline"])
        if now > entry.deadline + DEADLINE_GRACE_S:
            return Handoff(finish, [job_id, {"status": "deadline_exceeded"}])
    return None


def poll_after(headers: Any) -> float | None:
    """Seconds the server asked to wait before the next poll (``openai-poll-after-ms``), or None."""
    raw = headers.get("openai-poll-after-ms")
    try:
        return float(raw) / 1000 if raw else None
    except ValueError:
        return None


def http_error(
    ctx: PollContext, job_id: str, entry: Supervised, status: int, raw: bytes, headers: Any, *, finish: str
) -> Outcome:
    """A non-200 answer to a poll. A 429 that names its wait is waited out without counting as an error;
    other retryable answers are retried with backoff while retries last; the rest go to ``finish``."""
    wait = rate_limit_wait(status, headers)
    if wait is not None:
        return Again(error_delay(1, ctx.policy, retry_after=wait))
    try:
        err = orjson.loads(raw).get("error") or {}
    except (orjson.JSONDecodeError, AttributeError):
        err = {}
    code = err.get("code") or ("rate_limited" if status == 429 else f"http_{status}")
    message = err.get("message") or f"HTTP {status} while polling"
    return failed(
        ctx,
        job_id,
        entry,
        {"code": code, "message": message},
        retryable=is_retryable_status(status),
        retry_after=retry_after_seconds(headers),
        finish=finish,
    )


def failed(
    ctx: PollContext,
    job_id: str,
    entry: Supervised,
    error: dict[str, Any],
    *,
    retryable: bool,
    finish: str,
    retry_after: float | None = None,
) -> Outcome:
    """A poll that went wrong: poll again after ``error_delay`` while retries last (a retryable error),
    else hand the job to ``finish`` with ``{"status": "error", "error": ...}``."""
    errors = entry.errors + 1
    if retryable and errors <= ctx.settings.max_retries:
        delay = error_delay(errors, ctx.policy, retry_after=retry_after)
        return Again(delay, dataclasses.replace(entry, errors=errors))
    return Handoff(finish, [job_id, {"status": "error", "error": {**error, "retryable": retryable}}])
