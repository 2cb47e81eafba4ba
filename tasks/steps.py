"""What every job kind's flow shares: the services it runs on, deferring a step through the poll
schedule, and retrying a step whose API call failed."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import openai

from schemas.job import JobError, JobRecord, JobStatus
from tasks.backoff import PollPolicy, error_delay
from tasks.errors import classify, retry_after_of
from tasks.threads import ThreadLocks
from worker.rate_gate import RateGateClosed
from worker.scheduler import Schedule
from worker.settings import Settings
from worker.store import JobStore


@dataclass
class Services:
    """What a flow talks to: the store, the schedule, the thread locks, the API, the broker."""

    settings: Settings
    store: JobStore
    schedule: Schedule
    locks: ThreadLocks
    client: openai.OpenAI
    send: Callable[[str, list[Any]], None]

    @property
    def policy(self) -> PollPolicy:
        """The poll policy in force."""
        s = self.settings
        return PollPolicy(s.poll_first, s.poll_factor, s.poll_cap, s.poll_jitter)


def defer(svc: Services, job_id: str, task: str, args: list[Any], delay: float) -> None:
    """Send ``task`` with ``args`` in ``delay`` seconds, through the poll schedule: no countdown message
    sits unacked in a worker, and a worker's death loses nothing."""
    svc.schedule.put(job_id, delay, {"op": "task", "task": task, "args": args})


def retry_or_fail(
    svc: Services,
    record: JobRecord,
    exc: openai.OpenAIError,
    task: str,
    args: list[Any],
    fail: Callable[[JobError], None],
) -> None:
    """A step's API call failed: send the step again after a backoff (never before the server's
    Retry-After) while the error is retryable and the step has failed fewer than ``max_retries`` times
    in a row; else ``fail(error)``. A request the shared rate gate held back was never sent, so it
    waits out the gate without spending a retry."""
    if isinstance(exc, RateGateClosed):
        defer(svc, record.id, task, args, error_delay(1, svc.policy, retry_after=exc.wait))
        return
    error = classify(exc)
    if error.retryable and record.retries < svc.settings.max_retries:
        svc.store.update(record.id, lambda r: r.model_copy(update={"retries": r.retries + 1}))
        delay = error_delay(record.retries + 1, svc.policy, retry_after=retry_after_of(exc))
        defer(svc, record.id, task, args, delay)
        return
    fail(error)


def ended_by_poll(body: dict[str, Any], end: Callable[..., None], what: str) -> bool:
    """Handle the two hand-overs a poll makes without a remote status (see `tasks.poll_outcomes`): an
    error that spent its retries (the job fails, dead-lettered if it was retryable) and a deadline the
    remote cancel did not meet in time (the job times out). ``end(status, **fields)`` ends the job;
    True when it did."""
    status = body.get("status")
    if status == "error":
        error = JobError.model_validate(body["error"])
        end(JobStatus.FAILED, error=error, dead=error.retryable)
        return True
    if status == "deadline_exceeded":
        end(JobStatus.TIMED_OUT, error=deadline_error(what))
        return True
    return False


def deadline_error(what: str) -> JobError:
    """The error of a job that passed its deadline; ``what`` says what was cancelled."""
    return JobError(code="deadline_exceeded", message=f"the job passed its deadline; {what} cancelled")
