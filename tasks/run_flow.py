"""The life of a run job, shared by both backends: what its steps have in common (the request and
backend of a job, polling, ending and freeing the thread), cancel and re-drive. The start lives in
`tasks.run_start`, advancing on what a poll saw (finish, tool calls, outputs) in `tasks.run_finish`.
Plain functions on a `Services` bundle; the Celery tasks (`tasks.runs`) only call them.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

import openai

from schemas.context import STORED
from schemas.job import JobError, JobRecord, JobStatus
from schemas.requests import RunRequest
from tasks.assistants import AssistantsBackend
from tasks.backends import Backend
from tasks.responses import ResponsesBackend
from tasks.steps import (
    Services,
    cancel_end,
    count_redrive,
    defer,
    stalled_error,
)
from worker import constants as c
from worker.backoff import error_delay
from worker.dispatch import new_task_id
from worker.errors import classify, retry_after_of
from worker.polls import RunPoll, TaskDue

log = logging.getLogger(__name__)

BACKENDS: dict[str, Backend] = {"assistants": AssistantsBackend(), "responses": ResponsesBackend()}
"""Run backends by name."""


def request_of(record: JobRecord) -> RunRequest:
    """The job's request as a model (checked at submit, so its rules are not run again)."""
    return RunRequest.model_validate(record.request, context=STORED)


def backend_of(request: RunRequest) -> Backend:
    """The backend the request names (filled in at submit)."""
    return BACKENDS[str(request.backend or "responses")]


def task_name(template: str) -> str:
    """A run task's name from its template in `worker.constants`."""
    return template.format(kind="run")


def has_remote(record: JobRecord) -> bool:
    """Whether the job's remote run (or response) exists and is recorded."""
    return bool(record.remote.get("run_id") or record.remote.get("response_id"))


def watched(svc: Services, backend: Backend) -> bool:
    """Whether webhooks tell this job's end (so its polls are only the safety net)."""
    return svc.settings.webhooks and backend.webhooks


def first_poll(svc: Services, record: JobRecord, backend: Backend) -> float:
    """When to poll a run just created: soon, or, when webhooks watch it, after the safety period (at once
    if its webhook already came, overtaking the create's answer)."""
    return first_polls(svc, [(record, backend)])[0]


def first_polls(svc: Services, created: Sequence[tuple[JobRecord, Backend]]) -> list[float]:
    """`first_poll` of many runs just created, their responses tracked for webhooks in one round trip."""
    delays = [svc.settings.poll_first] * len(created)
    now = time.time()
    tracked = [
        (i, (str(record.remote["response_id"]), record.id, max((record.deadline_at or now) - now, 0.0)))
        for i, (record, backend) in enumerate(created)
        if watched(svc, backend)
    ]
    if tracked:
        keep = svc.settings.result_ttl
        early = svc.store.wakeups.track_many([(resp, job, left + keep) for _, (resp, job, left) in tracked])
        for (i, _), came in zip(tracked, early, strict=True):
            delays[i] = 0.0 if came else svc.settings.webhook_safety_poll
    return delays


def failer(svc: Services, job_id: str) -> Callable[[JobError], None]:
    """End the job failed with an error (dead-lettered when it was retryable: its retries are spent)."""
    return lambda error: end(svc, job_id, JobStatus.FAILED, error=error, dead=error.retryable)


def fail(svc: Services, job_id: str, error: JobError) -> None:
    """End the job ``failed`` with ``error`` and dead-letter it (a step gave up, or it stalled for good)."""
    end(svc, job_id, JobStatus.FAILED, error=error, dead=True)


def poll_soon(svc: Services, record: JobRecord, backend: Backend, delay: float, **extra: Any) -> None:
    """Give the job a poll of its run ``delay`` seconds from now (``extra``: `RunPoll` fields)."""
    svc.store.schedule.put(record.id, poll_entry(svc, record, backend, **extra), delay)


def poll_entry(svc: Services, record: JobRecord, backend: Backend, **extra: Any) -> RunPoll:
    """The schedule entry of a poll of the job's run (``extra``: `RunPoll` fields)."""
    return RunPoll(
        path=backend.poll_path(record.remote),
        deadline=record.deadline_at,
        safety=watched(svc, backend),
        **extra,
    )


def request_cancel(svc: Services, job_id: str, reason: str) -> None:
    """Mark a job for cancel and dispatch the cancel (used by `interrupt`)."""

    def mark(record: JobRecord) -> JobRecord | None:
        if record.status.ended or record.cancel_requested:
            return None
        record.cancel_requested = True
        return record

    try:
        svc.store.jobs.update(job_id, mark)
    except KeyError:
        return
    svc.send(task_name(c.TASK_CANCEL), [job_id, reason])


def cancel(svc: Services, job_id: str, reason: str) -> None:
    """Cancel the job's remote run; the job ends when a poll sees the run cancelled.

    ``reason`` is ``requested``, ``interrupted`` or ``deadline`` (which ends the job `timed_out`).
    """
    record = svc.store.jobs.get(job_id)
    if record is None or record.status.ended:
        return
    backend = backend_of(request_of(record))
    if record.status == JobStatus.QUEUED or not has_remote(record) or not backend.cancellable(record):
        final, error = cancel_end(reason, "its remote run was")
        end(svc, job_id, final, error=error)
        return
    svc.store.jobs.update(
        job_id,
        lambda r: r.model_copy(
            update={"cancel_requested": True, "remote": {**r.remote, "cancel_reason": reason}}
        ),
    )
    try:
        backend.cancel(svc.client, record.remote)
    except openai.OpenAIError as exc:
        if classify(exc).retryable:
            delay = error_delay(1, svc.policy, retry_after=retry_after_of(exc))
            defer(svc, job_id, task_name(c.TASK_CANCEL), [job_id, reason], delay)
            return
        # 400/404: the run already ended; the poll below reports how.
    poll_soon(svc, svc.store.jobs.require(job_id), backend, 0.2, cancelling=True)


def redrive(svc: Services, job_id: str) -> None:
    """Send on a job the watchdog found stopped (its message or poll was lost): poll its run again when
    one exists, else start it again (which first looks for a run an earlier attempt made). One stall too
    many ends it ``failed`` with code ``stalled``."""
    record = count_redrive(svc, job_id)
    if record is None:
        return
    if record.redrives > svc.settings.max_redrives:
        fail(svc, job_id, stalled_error(record.redrives - 1))
        return
    backend = backend_of(request_of(record))
    if has_remote(record):
        poll_soon(svc, record, backend, 0.0, waiting=record.status == JobStatus.REQUIRES_ACTION)
    else:
        svc.send(task_name(c.TASK_START), [[job_id]])


def end(svc: Services, job_id: str, status: JobStatus, *, dead: bool = False, **fields: Any) -> None:
    """Write the job's end state (which takes it off the schedule), free its thread and start the next
    job there."""
    record = svc.store.jobs.try_set_status(job_id, status, dead=dead, tool_calls=[], **fields)
    if record is None:
        return
    svc.store.inventory.touch(record.remote)  # its thread or conversation was active until now
    release(svc, record)


def release(svc: Services, record: JobRecord) -> None:
    """Free the job's thread, and start the next job waiting there (its start staged by the release)."""
    request = request_of(record)
    key = backend_of(request).lock_key(request, record.remote)
    if key is None:
        return
    start_task, task_id = task_name(c.TASK_START), new_task_id()
    handover = svc.store.threads.release(
        key, record.id, TaskDue(start_task), task_id, svc.settings.outbox_grace
    )
    if handover is not None:
        svc.dispatcher.sent(start_task, [[handover.job_id]], task_id, [handover.job_id], handover.token)
