"""The life of a run job, shared by both backends: start, advance on what a poll saw, tool outputs,
cancel and deadline, finish. Plain functions on a `Services` bundle; the Celery tasks only call them.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import openai

from schemas.job import IllegalTransition, JobError, JobRecord, JobStatus, Usage
from schemas.requests import RunRequest, RunStrategy
from tasks import tools
from tasks.assistants import AssistantsBackend
from tasks.backends import ACTIVE, Backend, Snapshot, add_usage
from tasks.backoff import compute_delay, error_delay
from tasks.errors import classify, retry_after_of
from tasks.responses import ResponsesBackend
from tasks.steps import Services, deadline_error, defer, ended_by_poll, retry_or_fail
from tasks.threads import Turn
from worker import constants as c
from worker import inventory

log = logging.getLogger(__name__)

BACKENDS: dict[str, Backend] = {"assistants": AssistantsBackend(), "responses": ResponsesBackend()}
"""Run backends by name."""


def request_of(record: JobRecord) -> RunRequest:
    """The job's request as a model."""
    return RunRequest.model_validate(record.request)


def backend_of(request: RunRequest) -> Backend:
    """The backend the request names (filled in at submit)."""
    return BACKENDS[str(request.backend or "assistants")]


def task_name(template: str) -> str:
    """A run task's name from its template in `worker.constants`."""
    return template.format(kind="run")


# --- start ------------------------------------------------------------------------------------
def start(svc: Services, job_id: str) -> None:
    """Take the job's thread (or wait, fail or interrupt per its strategy), create its remote run
    and schedule the first poll. Safe to run again at any point: it picks up where it stopped."""
    record = svc.store.get(job_id)
    if record is None or record.status.ended:
        return
    request = request_of(record)
    backend = backend_of(request)
    if record.remote.get("run_id") or record.remote.get("response_id"):
        _ensure_polled(svc, record, backend)
        return
    if record.deadline_at and time.time() > record.deadline_at:
        end(svc, job_id, JobStatus.TIMED_OUT, error=deadline_error("its remote run was"))
        return
    if not _take_thread(svc, record, request, backend):
        return
    inventory.record_used(svc.store.redis, dict(request))  # a given thread or conversation, for the clean-up
    # An earlier attempt that began a create and never learnt its outcome may have made the run.
    maybe_created = bool(record.remote.get("creating"))
    try:
        record = svc.store.update(job_id, _begin)
    except IllegalTransition:  # cancelled while it waited
        _release(svc, record)
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
    got = svc.locks.acquire(key, record.id, request.strategy.value)
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
    return False  # the holder's release dispatches this job's start


def _create_remote(
    svc: Services, record: JobRecord, request: RunRequest, backend: Backend, maybe_created: bool
) -> None:
    job_id = record.id

    def save(updates: dict[str, Any]) -> None:
        svc.store.update(job_id, lambda r: r.model_copy(update={"remote": {**r.remote, **updates}}))
        inventory.record_created(svc.store.redis, updates)  # a thread or conversation created here
        thread = updates.get("thread_id") or updates.get("conversation_id")
        if thread and backend.lock_key(request, {}) is None:
            # A thread this job created: hold it, so later jobs on it queue behind this one.
            svc.locks.acquire(thread, job_id, RunStrategy.ENQUEUE.value)

    try:
        remote = backend.start(svc.client, record, request, save, maybe_created)
    except openai.OpenAIError as exc:
        if isinstance(exc, openai.APIStatusError):  # the server answered: nothing was created
            save({"creating": False})
        _start_failed(svc, svc.store.require(job_id), exc)
        return
    remote["creating"] = False
    record = svc.store.update(
        job_id, lambda r: r.model_copy(update={"remote": {**r.remote, **remote}, "retries": 0})
    )
    _poll_soon(svc, record, backend, svc.settings.poll_first)
    if record.cancel_requested:
        svc.send(task_name(c.TASK_CANCEL), [job_id, "requested"])


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


def _is_active_run_conflict(exc: openai.OpenAIError) -> bool:
    return isinstance(exc, openai.BadRequestError) and "already has an active run" in str(exc)


def _poll_meta(record: JobRecord, backend: Backend, **extra: Any) -> dict[str, Any]:
    return {
        "op": "run",
        "b": backend.name,
        "path": backend.poll_path(record.remote),
        "n": 0,
        "dl": record.deadline_at,
        **extra,
    }


def _poll_soon(svc: Services, record: JobRecord, backend: Backend, delay: float, **extra: Any) -> None:
    svc.schedule.put(record.id, delay, _poll_meta(record, backend, **extra))


def _ensure_polled(svc: Services, record: JobRecord, backend: Backend) -> None:
    if svc.schedule.meta(record.id) is None and record.status == JobStatus.RUNNING:
        _poll_soon(svc, record, backend, 0.0)


# --- advance ----------------------------------------------------------------------------------
def advance(svc: Services, job_id: str, body: dict[str, Any]) -> None:
    """Act on what a poll saw: finish, wait for tool outputs, answer them, or keep polling."""
    record = svc.store.get(job_id)
    if record is None or record.status.ended:
        svc.schedule.remove(job_id)
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
            _finish(svc, record, backend, snap)
    except openai.OpenAIError as exc:
        retry_or_fail(svc, record, exc, task_name(c.TASK_FINISH), [job_id, body], _failer(svc, job_id))


def _usage(record: JobRecord, backend: Backend, snap: Snapshot) -> Usage | None:
    if backend.usage_per_round:
        return add_usage(record.usage, snap.usage)
    return snap.usage or record.usage


def _finish(svc: Services, record: JobRecord, backend: Backend, snap: Snapshot) -> None:
    usage = _usage(record, backend, snap)
    status = snap.status
    if status == "completed":
        result = backend.result(svc.client, record, snap)
        end(svc, record.id, JobStatus.COMPLETED, result=result, usage=usage)
    elif status == "cancelled":
        reason = record.remote.get("cancel_reason")
        if reason == "deadline":
            end(svc, record.id, JobStatus.TIMED_OUT, error=deadline_error("its remote run was"), usage=usage)
        else:
            end(svc, record.id, JobStatus.CANCELLED, usage=usage)
    elif status == "expired":
        end(
            svc,
            record.id,
            JobStatus.EXPIRED,
            usage=usage,
            error=JobError(code="expired", message="the run expired while it waited for tool outputs"),
        )
    elif status == "incomplete":
        details = snap.incomplete or {}
        end(
            svc,
            record.id,
            JobStatus.FAILED,
            usage=usage,
            result={"incomplete_details": details},
            error=JobError(
                code="incomplete", message=f"the run ended incomplete: {details.get('reason', 'unknown')}"
            ),
        )
    else:
        err = snap.error or {}
        end(
            svc,
            record.id,
            JobStatus.FAILED,
            usage=usage,
            error=JobError(
                code=str(err.get("code") or "run_failed"),
                message=str(err.get("message") or f"the run ended {status}"),
            ),
        )


def _tool_calls(
    svc: Services, record: JobRecord, request: RunRequest, backend: Backend, snap: Snapshot
) -> None:
    names = [call.name for call in snap.tool_calls]
    usage = _usage(record, backend, snap)
    if request.run_tools and tools.can_answer(names):
        try:
            outputs = [
                {"tool_call_id": t.id, "output": tools.call(t.name, t.arguments)} for t in snap.tool_calls
            ]
        except Exception as exc:
            end(
                svc,
                record.id,
                JobStatus.FAILED,
                usage=usage,
                error=JobError(
                    code="tool_error", message=f"registered tool raised {type(exc).__name__}: {exc}"
                ),
            )
            return
        record = svc.store.update(record.id, lambda r: r.model_copy(update={"usage": usage}))
        send_outputs(svc, record.id, outputs)
        return
    known = {t.id for t in record.tool_calls}
    if record.status == JobStatus.REQUIRES_ACTION and known == {t.id for t in snap.tool_calls}:
        _wait_for_outputs(svc, record, backend, snap)
        return
    record = svc.store.update(
        record.id,
        lambda r: r.model_copy(
            update={"status": JobStatus.REQUIRES_ACTION, "tool_calls": snap.tool_calls, "usage": usage}
        ),
    )
    _wait_for_outputs(svc, record, backend, snap)


def _wait_for_outputs(svc: Services, record: JobRecord, backend: Backend, snap: Snapshot) -> None:
    # Nothing changes remotely while a run waits, but it expires: look again just after that.
    now = time.time()
    until = [t for t in (snap.expires_at and snap.expires_at + 1, record.deadline_at) if t]
    delay = max(min(until) - now, 1.0) if until else 60.0
    _poll_soon(svc, record, backend, delay, wait=True)


def send_outputs(svc: Services, job_id: str, outputs: list[dict[str, str]]) -> None:
    """Send tool outputs for the job's pending calls and resume polling."""
    record = svc.store.require(job_id)
    if record.status.ended:
        return
    request = request_of(record)
    backend = backend_of(request)
    try:
        remote = backend.submit_outputs(svc.client, record, request, outputs)
    except openai.OpenAIError as exc:
        if classify(exc).retryable:
            retry_or_fail(
                svc, record, exc, task_name(c.TASK_TOOL_OUTPUTS), [job_id, outputs], _failer(svc, job_id)
            )
            return
        # The run may have expired or been cancelled meanwhile: let a poll tell what it is now.
        log.warning("tool outputs for job %s refused: %s", job_id, classify(exc).message)
        _poll_soon(svc, record, backend, 0.0)
        return
    record = svc.store.update(
        job_id,
        lambda r: r.model_copy(
            update={
                "status": JobStatus.RUNNING,
                "tool_calls": [],
                "remote": {**r.remote, **remote},
                "retries": 0,
            }
        ),
    )
    _poll_soon(svc, record, backend, svc.settings.poll_first)


# --- cancel -----------------------------------------------------------------------------------
def request_cancel(svc: Services, job_id: str, reason: str) -> None:
    """Mark a job for cancel and dispatch the cancel (used by `interrupt`)."""

    def mark(record: JobRecord) -> JobRecord | None:
        if record.status.ended or record.cancel_requested:
            return None
        record.cancel_requested = True
        return record

    try:
        svc.store.update(job_id, mark)
    except KeyError:
        return
    svc.send(task_name(c.TASK_CANCEL), [job_id, reason])


def cancel(svc: Services, job_id: str, reason: str) -> None:
    """Cancel the job's remote run; the job ends when a poll sees the run cancelled.

    ``reason`` is ``requested``, ``interrupted`` or ``deadline`` (which ends the job `timed_out`).
    """
    record = svc.store.get(job_id)
    if record is None or record.status.ended:
        return
    final = JobStatus.TIMED_OUT if reason == "deadline" else JobStatus.CANCELLED
    error = deadline_error("its remote run was") if reason == "deadline" else None
    backend = backend_of(request_of(record))
    has_remote = record.remote.get("run_id") or record.remote.get("response_id")
    if record.status == JobStatus.QUEUED or not has_remote or not backend.cancellable(record):
        end(svc, job_id, final, error=error)
        return
    svc.store.update(
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
    _poll_soon(svc, svc.store.require(job_id), backend, 0.2, cancelling=True)


# --- end --------------------------------------------------------------------------------------
def end(svc: Services, job_id: str, status: JobStatus, *, dead: bool = False, **fields: Any) -> None:
    """Write the job's end state, take it off the schedule, free its thread and start the next job there."""
    record = svc.store.try_set_status(job_id, status, dead=dead, tool_calls=[], **fields)
    svc.schedule.remove(job_id)
    if record is None:
        return
    inventory.touch(svc.store.redis, record.remote)  # its thread or conversation was active until now
    _release(svc, record)


def _release(svc: Services, record: JobRecord) -> None:
    request = request_of(record)
    key = backend_of(request).lock_key(request, record.remote)
    if key is None:
        return
    nxt = svc.locks.release(key, record.id)
    if nxt:
        svc.send(task_name(c.TASK_START), [[nxt]])
