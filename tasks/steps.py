"""What every job kind's flow shares: the services it runs on, deferring a step through the poll
schedule, retrying a step whose API call failed, and how a cancel reason ends a job."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import threading
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import openai
from celery.exceptions import SoftTimeLimitExceeded

from schemas.job import JobError, JobRecord, JobStatus
from tasks.tools import Tools
from worker.async_api import ApiLoop, AsyncApi
from worker.backoff import PollPolicy, error_delay, policy_of
from worker.dispatch import Dispatcher
from worker.errors import classify, rate_limit_wait_of, retry_after_of
from worker.polls import TaskDue
from worker.settings import Settings
from worker.store import Store


@dataclass
class Services:
    """What a flow talks to: the store, the API, the broker (through the outbox), the worker's tools."""

    settings: Settings
    store: Store
    client: openai.OpenAI
    """The SDK, for every call that is not made by the thousand."""
    api: ApiLoop
    """The lean async path (`worker.async_api`), for the calls that are: the starts' creates, the finishes'
    results."""
    dispatcher: Dispatcher
    tools: Tools

    @property
    def policy(self) -> PollPolicy:
        """The poll policy in force."""
        return policy_of(self.settings)

    def send(self, task: str, args: list[Any]) -> None:
        """Send a Celery task through the outbox (see `worker.dispatch`)."""
        self.dispatcher.send(task, args)


T = TypeVar("T")

Guard = Callable[[str, Callable[[], None]], None]
"""``guard(job_id, step)`` runs one job's step of a group so that an unexpected error ends that job alone
(`tasks.base.each_job`)."""


Outcomes = list[dict[str, Any] | BaseException]
"""Each call's answer or the exception it raised, in the order of the items."""


def each_async(
    svc: Services, items: Sequence[T], call: Callable[[AsyncApi, T], Awaitable[dict[str, Any]]]
) -> Outcomes:
    """``call`` for each item, all in flight at once on the lean API path; their `Outcomes`."""
    if not items:
        return []

    async def all_of(api: AsyncApi) -> Outcomes:
        return await asyncio.gather(*(call(api, item) for item in items), return_exceptions=True)

    return svc.api.run(all_of)


@contextlib.contextmanager
def soft_limit_held(settings: Settings) -> Iterator[None]:
    """Hold a task's soft time limit off until the block is done, then raise it. For a block that makes
    something on the server and records it: cut off between the two (or while the calls are in flight,
    which go on in the lean path's thread regardless), the retried task would make it again.

    The hold lasts at most half the time between the soft and the hard limit; a block still running then
    is interrupted where it is, as without the hold, so the hard limit (which kills the process and fails
    the message's jobs) is never reached for it.

    Celery's prefork pool announces the soft limit with SIGUSR1 (billiard's ``SIG_SOFT_TIMEOUT``), whose
    handler runs in the task's thread, the process's main one; in any other thread there is no soft limit
    to hold."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    grace = max(settings.task_time_limit - settings.task_soft_time_limit, 0) / 2
    struck = threading.Event()
    timer = threading.Timer(grace, signal.pthread_kill, (threading.main_thread().ident, signal.SIGUSR1))
    timer.daemon = True

    def on_soft_limit(_signum: int, _frame: object) -> None:
        if struck.is_set():  # the grace is over
            raise SoftTimeLimitExceeded()
        struck.set()
        timer.start()

    previous = signal.signal(signal.SIGUSR1, on_soft_limit)
    try:
        yield
    finally:
        timer.cancel()
        signal.signal(signal.SIGUSR1, previous if previous is not None else signal.SIG_DFL)
    if struck.is_set():
        raise SoftTimeLimitExceeded()


def defer(svc: Services, job_id: str, task: str, args: list[Any], delay: float) -> None:
    """Send ``task`` with ``args`` in ``delay`` seconds, through the poll schedule: no countdown message
    sits unacked in a worker, and a worker's death loses nothing."""
    svc.store.schedule.put(job_id, TaskDue(task, args), delay)


LEASE_SLACK_S = 0.5
"""How long after a lease's TTL a step comes back for it, so it finds the lease gone."""


def after_lease(svc: Services, job_id: str, task: str, args: list[Any]) -> None:
    """Another task holds the job's step lease: a duplicate message at work now, or a worker killed inside
    the step whose message the broker gave again at once (RabbitMQ: no visibility timeout to wait out).
    Send ``task`` again when the lease lapses, unless the holder has already moved the job on (its next
    entry is on the schedule): a live holder will have done the step by then, and this one finds nothing
    left to do."""
    entry = svc.store.schedule.entry(job_id)
    if entry is None or (isinstance(entry, TaskDue) and entry.task == task):
        defer(svc, job_id, task, args, svc.store.leases.remaining(job_id) + LEASE_SLACK_S)


def retry_later(
    svc: Services, record: JobRecord, exc: openai.OpenAIError, task: str, args: list[Any]
) -> bool:
    """Send the step again later if its API error is worth another try; False when it is not.

    A rate limit that names its wait (a 429 with Retry-After or a rate-limit reset, or the shared rate gate
    holding the request back) is waited out without spending a retry: "later" is not "broken", and the
    job's deadline bounds the wait. Any other retryable error spends one of ``max_retries`` in a row, with
    a growing backoff. A permanent error, or a retryable one with the retries spent, is not retried.
    """
    wait = rate_limit_wait_of(exc)
    if wait is not None:
        defer(svc, record.id, task, args, error_delay(1, svc.policy, retry_after=wait))
        return True
    if classify(exc).retryable and record.retries < svc.settings.max_retries:
        svc.store.jobs.update(record.id, lambda r: r.model_copy(update={"retries": r.retries + 1}))
        delay = error_delay(record.retries + 1, svc.policy, retry_after=retry_after_of(exc))
        defer(svc, record.id, task, args, delay)
        return True
    return False


def retry_or_fail(
    svc: Services,
    record: JobRecord,
    exc: openai.OpenAIError,
    task: str,
    args: list[Any],
    fail: Callable[[JobError], None],
) -> None:
    """A step's API call failed: send the step again later while that can help (`retry_later`), else
    ``fail(error)``."""
    if not retry_later(svc, record, exc, task, args):
        fail(classify(exc))


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


def cancel_end(reason: str, what: str) -> tuple[JobStatus, JobError | None]:
    """How a job cancelled for ``reason`` ends: `timed_out` past its deadline, else `cancelled`."""
    if reason == "deadline":
        return JobStatus.TIMED_OUT, deadline_error(what)
    return JobStatus.CANCELLED, None


def count_redrive(svc: Services, job_id: str) -> JobRecord | None:
    """Count one re-drive on the record (with a ``job.redriven`` event); None when the job has ended."""

    def count(record: JobRecord) -> JobRecord | None:
        if record.status.ended:
            return None
        record.redrives += 1
        return record

    record = svc.store.jobs.update(job_id, count, event="job.redriven")
    return None if record.status.ended else record


def stalled_error(redrives: int) -> JobError:
    """The error of a job the watchdog found stopped again after ``redrives`` re-drives."""
    return JobError(
        code="stalled",
        message=f"the job stopped moving and was re-driven {redrives} times without progress; "
        "see the worker logs for what it was doing",
    )


def internal_error(exc: BaseException, what: str) -> JobError:
    """The error of a job whose step raised something unexpected (a bug, or retries spent)."""
    return JobError(code="internal_error", message=f"{what} failed: {type(exc).__name__}: {exc}")
