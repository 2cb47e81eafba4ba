"""The life of a run job, shared by both backends: start, advance on what a poll saw, tool outputs,
cancel and deadline, finish. Plain functions on a `Services` bundle; the Celery tasks only call them.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import openai

from schemas.context import STORED
from schemas.job import IllegalTransition, JobError, JobRecord, JobStatus, Usage
from schemas.requests import RunRequest, RunStrategy
from tasks.assistants import AssistantsBackend
from tasks.backends import ACTIVE, Backend, Snapshot, add_usage
from tasks.responses import ResponsesBackend
from tasks.steps import (
    Services,
    cancel_end,
    count_redrive,
    deadline_error,
    defer,
    ended_by_poll,
    retry_or_fail,
    stalled_error,
)
from worker import constants as c
from worker.backoff import compute_delay, error_delay
from worker.dispatch import new_task_id
from worker.errors import classify, rate_limit_wait_of, retry_after_of
from worker.polls import RunPoll, TaskDue
from worker.store.threads import Turn

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


# --- start ------------------------------------------------------------------------------------
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


def _create_under_lease(svc: Services, job_id: str, request: RunRequest, backend: Backend) -> None:
    record = svc.store.jobs.require(job_id)  # read again: another holder may have created it meanwhile
    if record.status.ended or has_remote(record):
        return
    # An earlier attempt that began a create and never learnt its outcome may have made the run.
    maybe_created = bool(record.remote.get("creating")) or record.attempts > 0
    try:
        record = svc.store.jobs.update(job_id, _begin)
    except IllegalTransition:  # cancelled while it waited
        _release(svc, record)
        return
    _create_remote(svc, record, request, backend, maybe_created)


def has_remote(record: JobRecord) -> bool:
    """Whether the job's remote run (or response) exists and is recorded."""
    return bool(record.remote.get("run_id") or record.remote.get("response_id"))


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
    _poll_soon(svc, record, backend, _first_poll(svc, record, backend))
    if record.cancel_requested:
        svc.send(task_name(c.TASK_CANCEL), [job_id, "requested"])


def _watched(svc: Services, backend: Backend) -> bool:
    """Whether webhooks tell this job's end (so its polls are only the safety net)."""
    return svc.settings.webhooks and backend.webhooks


def _first_poll(svc: Services, record: JobRecord, backend: Backend) -> float:
    """When to poll a run just created: soon, or, when webhooks watch it, after the safety period (at once
    if its webhook already came, overtaking the create's answer)."""
    if not _watched(svc, backend):
        return svc.settings.poll_first
    keep = max((record.deadline_at or time.time()) - time.time(), 0.0) + svc.settings.result_ttl
    early = svc.store.wakeups.track(str(record.remote["response_id"]), record.id, keep)
    return 0.0 if early else svc.settings.webhook_safety_poll


def _start_failed(svc: Services, record: JobRecord, exc: openai.OpenAIError) -> None:
    if _is_active_run_conflict(exc):
        # A run started outside this system holds the thread: wait it out, do not fight it.
        delay = compute_delay(record.attempts, svc.policy)
        defer(svc, record.id, task_name(c.TASK_START), [[record.id]], delay)
        return
    retry_or_fail(svc, record, exc, task_name(c.TASK_START), [[record.id]], _failer(svc, record.id))


def _failer(svc: Services, job_id: str) -> Callable[[JobError], None]:
    """End the job failed with an error (dead-lettered when it was retryable: its retries are spent)."""
    return lambda error: end(svc, job_id, JobStatus.FAILED, error=error, dead=error.retryable)


def fail(svc: Services, job_id: str, error: JobError) -> None:
    """End the job ``failed`` with ``error`` and dead-letter it (a step gave up, or it stalled for good)."""
    end(svc, job_id, JobStatus.FAILED, error=error, dead=True)


def _is_active_run_conflict(exc: openai.OpenAIError) -> bool:
    return isinstance(exc, openai.BadRequestError) and "already has an active run" in str(exc)


def _poll_soon(svc: Services, record: JobRecord, backend: Backend, delay: float, **extra: Any) -> None:
    entry = RunPoll(
        path=backend.poll_path(record.remote),
        deadline=record.deadline_at,
        safety=_watched(svc, backend),
        **extra,
    )
    svc.store.schedule.put(record.id, entry, delay)


def _ensure_polled(svc: Services, record: JobRecord, backend: Backend) -> None:
    """A start found the run already created (a redelivered or duplicate message): make sure it is
    polled, unless a poll (or another step) already owns the job."""
    entry = svc.store.schedule.entry(record.id)
    starting = isinstance(entry, TaskDue) and entry.task == task_name(c.TASK_START)
    if record.status == JobStatus.RUNNING and (entry is None or starting):
        _poll_soon(svc, record, backend, 0.0)


# --- advance ----------------------------------------------------------------------------------
def advance(svc: Services, job_id: str, body: dict[str, Any]) -> None:
    """Act on what a poll saw: finish, wait for tool outputs, answer them, or keep polling."""
    record = svc.store.jobs.get(job_id)
    if record is None or record.status.ended:
        svc.store.schedule.remove(job_id)
        return
    request = request_of(record)
    backend = backend_of(request)
    if ended_by_poll(body, lambda status, **fields: end(svc, job_id, status, **fields), "its remote run was"):
        return
    snap = backend.snapshot(body)
    try:
        if snap.status in ACTIVE:
            _poll_soon(svc, record, backend, compute_delay(0, svc.policy))
        elif snap.status == "requires_action":
            _tool_calls(svc, record, request, backend, snap)
        else:
            _finish(svc, record, backend, snap, body.get("learnt_by"))
    except openai.OpenAIError as exc:
        retry_or_fail(svc, record, exc, task_name(c.TASK_FINISH), [job_id, body], _failer(svc, job_id))


def _usage(record: JobRecord, backend: Backend, snap: Snapshot) -> Usage | None:
    if backend.usage_per_round:
        return add_usage(record.usage, snap.usage)
    return snap.usage or record.usage


def _finish(
    svc: Services, record: JobRecord, backend: Backend, snap: Snapshot, learnt_by: str | None = None
) -> None:
    common: dict[str, Any] = {"usage": _usage(record, backend, snap)}
    if learnt_by is not None:
        common["end_learnt_by"] = learnt_by
        _learnt(svc, record, backend, learnt_by)
    status = snap.status
    if status == "completed":
        result = backend.result(svc.client, record, snap)
        end(svc, record.id, JobStatus.COMPLETED, result=result, **common)
    elif status == "cancelled":
        reason = str(record.remote.get("cancel_reason") or "requested")
        final, error = cancel_end(reason, "its remote run was")
        end(svc, record.id, final, error=error, **common)
    elif status == "expired":
        error = JobError(code="expired", message="the run expired while it waited for tool outputs")
        end(svc, record.id, JobStatus.EXPIRED, error=error, **common)
    elif status == "incomplete":
        details = snap.incomplete or {}
        error = JobError(
            code="incomplete", message=f"the run ended incomplete: {details.get('reason', 'unknown')}"
        )
        end(svc, record.id, JobStatus.FAILED, result={"incomplete_details": details}, error=error, **common)
    else:
        err = snap.error or {}
        error = JobError(
            code=str(err.get("code") or "run_failed"),
            message=str(err.get("message") or f"the run ended {status}"),
        )
        end(svc, record.id, JobStatus.FAILED, error=error, **common)


def _learnt(svc: Services, record: JobRecord, backend: Backend, learnt_by: str) -> None:
    """Count how a watched run's end was learnt. An end the safety poll found while webhooks are on means a
    webhook did not come (the endpoint is not registered with OpenAI, or its secret is wrong): say so in
    the log and with a ``job.webhook_missed`` event."""
    if not _watched(svc, backend):
        return
    svc.store.wakeups.ended(learnt_by)
    if learnt_by == "poll":
        log.warning(
            "job %s: the safety poll, not a webhook, found its response's end; check that the webhook "
            "endpoint is registered with OpenAI and that AJ_WEBHOOK_SECRET is its secret",
            record.id,
        )
        svc.store.jobs.announce(
            record.id, "job.webhook_missed", {"response_id": record.remote.get("response_id")}
        )


def _tool_calls(
    svc: Services, record: JobRecord, request: RunRequest, backend: Backend, snap: Snapshot
) -> None:
    names = [call.name for call in snap.tool_calls]
    usage = _usage(record, backend, snap)
    if request.run_tools and svc.tools.can_answer(names):
        try:
            outputs = [
                {"tool_call_id": t.id, "output": svc.tools.call(t.name, t.arguments)} for t in snap.tool_calls
            ]
        except Exception as exc:
            _tool_raised(svc, record, backend, usage, exc)
            return
        record = svc.store.jobs.update(record.id, lambda r: r.model_copy(update={"usage": usage}))
        send_outputs(svc, record.id, outputs)
        return
    known = {t.id for t in record.tool_calls}
    if record.status == JobStatus.REQUIRES_ACTION and known == {t.id for t in snap.tool_calls}:
        _wait_for_outputs(svc, record, backend, snap)
        return
    record = svc.store.jobs.update(
        record.id,
        lambda r: r.model_copy(
            update={"status": JobStatus.REQUIRES_ACTION, "tool_calls": snap.tool_calls, "usage": usage}
        ),
    )
    _wait_for_outputs(svc, record, backend, snap)


def _tool_raised(
    svc: Services, record: JobRecord, backend: Backend, usage: Usage | None, exc: Exception
) -> None:
    """A registered tool raised: the job fails, and its remote run is cancelled so it does not hold the
    thread until it expires (about ten minutes). A cancel that fails is logged: the run then expires."""
    if backend.cancellable(record):
        try:
            backend.cancel(svc.client, record.remote)
        except openai.OpenAIError as cancel_exc:
            log.warning("job %s: cancelling the run after its tool raised failed: %s", record.id, cancel_exc)
    error = JobError(code="tool_error", message=f"registered tool raised {type(exc).__name__}: {exc}")
    end(svc, record.id, JobStatus.FAILED, usage=usage, error=error)


def _wait_for_outputs(svc: Services, record: JobRecord, backend: Backend, snap: Snapshot) -> None:
    # Nothing changes remotely while a run waits, but it expires: look again just after that.
    now = time.time()
    until = [t for t in (snap.expires_at and snap.expires_at + 1, record.deadline_at) if t]
    delay = max(min(until) - now, 1.0) if until else 60.0
    _poll_soon(svc, record, backend, delay, waiting=True)


def send_outputs(svc: Services, job_id: str, outputs: list[dict[str, str]]) -> None:
    """Send tool outputs for the job's pending calls and resume polling."""
    record = svc.store.jobs.require(job_id)
    if record.status.ended:
        return
    request = request_of(record)
    backend = backend_of(request)
    try:
        remote = backend.submit_outputs(svc.client, record, request, outputs)
    except openai.OpenAIError as exc:
        if classify(exc).retryable or rate_limit_wait_of(exc) is not None:
            retry_or_fail(
                svc, record, exc, task_name(c.TASK_TOOL_OUTPUTS), [job_id, outputs], _failer(svc, job_id)
            )
            return
        # The run may have expired or been cancelled meanwhile: let a poll tell what it is now.
        log.warning("tool outputs for job %s refused: %s", job_id, classify(exc).message)
        _poll_soon(svc, record, backend, 0.0)
        return
    record = svc.store.jobs.update(
        job_id,
        lambda r: r.model_copy(
            update={
                "status": JobStatus.RUNNING,
                "tool_calls": [],
                # tool_rounds: read by the typed result (schemas.results.RunResult)
                "remote": {**r.remote, **remote, "tool_rounds": int(r.remote.get("tool_rounds", 0)) + 1},
                "retries": 0,
            }
        ),
    )
    _poll_soon(svc, record, backend, _first_poll(svc, record, backend))


# --- cancel -----------------------------------------------------------------------------------
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
    _poll_soon(svc, svc.store.jobs.require(job_id), backend, 0.2, cancelling=True)


# --- a response stuck queued -------------------------------------------------------------------
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
            retry_or_fail(svc, record, exc, task_name(c.TASK_REQUEUE), [job_id], _failer(svc, job_id))
            return
        remote.pop("rounds", None)  # the rounds so far still count
        record = svc.store.jobs.update(
            job_id,
            lambda r: r.model_copy(update={"remote": {**r.remote, **remote, "requeued_from": stuck}}),
            event="job.requeued",
            data={"stuck": stuck, "response_id": remote["response_id"]},
        )
        _poll_soon(svc, record, backend, _first_poll(svc, record, backend))


# --- redrive ----------------------------------------------------------------------------------
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
        _poll_soon(svc, record, backend, 0.0, waiting=record.status == JobStatus.REQUIRES_ACTION)
    else:
        svc.send(task_name(c.TASK_START), [[job_id]])


# --- end --------------------------------------------------------------------------------------
def end(svc: Services, job_id: str, status: JobStatus, *, dead: bool = False, **fields: Any) -> None:
    """Write the job's end state (which takes it off the schedule), free its thread and start the next
    job there."""
    record = svc.store.jobs.try_set_status(job_id, status, dead=dead, tool_calls=[], **fields)
    if record is None:
        return
    svc.store.inventory.touch(record.remote)  # its thread or conversation was active until now
    _release(svc, record)


def _release(svc: Services, record: JobRecord) -> None:
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
