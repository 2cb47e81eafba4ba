"""Starting a run job: take its thread (or wait, fail or interrupt per its strategy), create the remote
run under the job's step lease, schedule the first poll; and create again a response stuck ``queued``."""

from __future__ import annotations

import logging
import time
from typing import Any

import openai

from schemas.job import IllegalTransition, JobError, JobRecord, JobStatus
from schemas.requests import RunRequest, RunStrategy
from tasks.backends import Backend
from tasks.run_flow import (
    backend_of,
    end,
    fail,
    failer,
    first_poll,
    has_remote,
    poll_soon,
    release,
    request_cancel,
    request_of,
    task_name,
)
from tasks.steps import (
    Services,
    after_lease,
    deadline_error,
    defer,
    retry_or_fail,
)
from worker import constants as c
from worker.backoff import compute_delay
from worker.polls import TaskDue
from worker.store.threads import Turn

log = logging.getLogger(__name__)


def start(svc: Services, job_id: str) -> None:
    """Take the job's thread (or wait, fail or interrupt per its strategy), create its remote run
    and schedule the first poll. Safe to run again at any point, and twice at once: the create is done
    under the job's step lease, so a duplicate message never creates a second run."""
    record = svc.store.jobs.get(job_id)
    if record is None or record.status.ended:
        return
    request = request_of(record)
    backend = backend_of(request)
    if has_remote(record):
        _ensure_polled(svc, record, backend)
        return
    if record.deadline_at and time.time() > record.deadline_at:
        end(svc, job_id, JobStatus.TIMED_OUT, error=deadline_error("its remote run was"))
        return
    if not _take_thread(svc, record, request, backend):
        return
    svc.store.inventory.record_used(dict(request))  # a given thread or conversation, for the clean-up
    with svc.store.leases.hold(job_id, svc.settings.task_time_limit) as mine:
        if mine:
            _create_under_lease(svc, job_id, request, backend)
            return
    after_lease(svc, job_id, task_name(c.TASK_START), [[job_id]])


def _create_under_lease(svc: Services, job_id: str, request: RunRequest, backend: Backend) -> None:
    record = svc.store.jobs.require(job_id)  # read again: another holder may have created it meanwhile
    if record.status.ended or has_remote(record):
        return
    # An earlier attempt that began a create and never learnt its outcome may have made the run.
    maybe_created = bool(record.remote.get("creating")) or record.attempts > 0
    try:
        record = svc.store.jobs.update(job_id, _begin)
    except IllegalTransition:  # cancelled while it waited
        release(svc, record)
        return
    _create_remote(svc, record, request, backend, maybe_created)


def _begin(record: JobRecord) -> JobRecord | None:
    if record.status.ended:
        raise IllegalTransition(record.id, record.status, JobStatus.RUNNING)
    record.status = JobStatus.RUNNING
    record.attempts += 1
    # Set until the create is known to have happened, or not, so a later attempt knows to look.
    record.remote["creating"] = True
    return record


def _take_thread(svc: Services, record: JobRecord, request: RunRequest, backend: Backend) -> bool:
    key = backend.lock_key(request, record.remote)
    if key is None:
        return True
    got = svc.store.threads.acquire(key, record.id, request.strategy.value)
    if got.turn == Turn.ACQUIRED:
        return True
    if got.turn == Turn.BUSY:
        end(
            svc,
            record.id,
            JobStatus.FAILED,
            error=JobError(
                code="thread_busy",
                message=f"{key} already has an active run (job {got.other}); strategy is reject",
            ),
        )
        return False
    if request.strategy == RunStrategy.INTERRUPT:
        request_cancel(svc, got.other, reason="interrupted")
    return False  # the holder's release starts this job; until then the thread's queue holds it


def _create_remote(
    svc: Services, record: JobRecord, request: RunRequest, backend: Backend, maybe_created: bool
) -> None:
    job_id = record.id

    def save(updates: dict[str, Any]) -> None:
        svc.store.jobs.update(job_id, lambda r: r.model_copy(update={"remote": {**r.remote, **updates}}))
        svc.store.inventory.record_created(updates)  # a thread or conversation created here
        thread = updates.get("thread_id") or updates.get("conversation_id")
        if thread and backend.lock_key(request, {}) is None:
            # A thread this job created: hold it, so later jobs on it queue behind this one.
            svc.store.threads.acquire(thread, job_id, RunStrategy.ENQUEUE.value)

    try:
        remote = backend.start(svc.client, record, request, save, maybe_created)
    except openai.OpenAIError as exc:
        if isinstance(exc, openai.APIStatusError):  # the server answered: nothing was created
            save({"creating": False})
        _start_failed(svc, svc.store.jobs.require(job_id), exc)
        return
    remote["creating"] = False
    record = svc.store.jobs.update(
        job_id, lambda r: r.model_copy(update={"remote": {**r.remote, **remote}, "retries": 0})
    )
    poll_soon(svc, record, backend, first_poll(svc, record, backend))
    if record.cancel_requested:
        svc.send(task_name(c.TASK_CANCEL), [job_id, "requested"])


def _start_failed(svc: Services, record: JobRecord, exc: openai.OpenAIError) -> None:
    if _is_active_run_conflict(exc):
        # A run started outside this system holds the thread: wait it out, do not fight it.
        delay = compute_delay(record.attempts, svc.policy)
        defer(svc, record.id, task_name(c.TASK_START), [[record.id]], delay)
        return
    retry_or_fail(svc, record, exc, task_name(c.TASK_START), [[record.id]], failer(svc, record.id))


def _is_active_run_conflict(exc: openai.OpenAIError) -> bool:
    return isinstance(exc, openai.BadRequestError) and "already has an active run" in str(exc)


def _ensure_polled(svc: Services, record: JobRecord, backend: Backend) -> None:
    """A start found the run already created (a redelivered or duplicate message): make sure it is
    polled, unless a poll (or another step) already owns the job."""
    entry = svc.store.schedule.entry(record.id)
    starting = isinstance(entry, TaskDue) and entry.task == task_name(c.TASK_START)
    if record.status == JobStatus.RUNNING and (entry is None or starting):
        poll_soon(svc, record, backend, 0.0)


def requeue(svc: Services, job_id: str) -> None:
    """The job's background response stayed ``queued`` past `Settings.queued_stuck_after`: cancel it and
    create it again, once (recorded on the job with a ``job.requeued`` event); stuck a second time, the job
    fails with code ``stuck_queued``."""
    record = svc.store.jobs.get(job_id)
    if record is None or record.status.ended or not has_remote(record):
        return
    request = request_of(record)
    backend = backend_of(request)
    with svc.store.leases.hold(job_id, svc.settings.task_time_limit) as mine:
        if not mine:
            return
        stuck = str(record.remote["response_id"])
        try:
            backend.cancel(svc.client, record.remote)
        except openai.OpenAIError as exc:
            log.warning("job %s: cancelling the stuck response %s failed: %s", job_id, stuck, exc)
        if record.remote.get("requeued_from"):
            bound = svc.settings.queued_stuck_after
            message = (
                f"the background response stayed queued longer than {bound:.0f} s twice "
                "(it was created again once); OpenAI may be overloaded"
            )
            error = JobError(code="stuck_queued", message=message)
            fail(svc, job_id, error)
            return
        fresh = dict(record.remote)
        fresh.pop("response_id")
        try:
            remote = backend.start(
                svc.client, record.model_copy(update={"remote": fresh}), request, lambda _: None, False
            )
        except openai.OpenAIError as exc:
            retry_or_fail(svc, record, exc, task_name(c.TASK_REQUEUE), [job_id], failer(svc, job_id))
            return
        remote.pop("rounds", None)  # the rounds so far still count
        record = svc.store.jobs.update(
            job_id,
            lambda r: r.model_copy(update={"remote": {**r.remote, **remote, "requeued_from": stuck}}),
            event="job.requeued",
            data={"stuck": stuck, "response_id": remote["response_id"]},
        )
        poll_soon(svc, record, backend, first_poll(svc, record, backend))
