"""Advancing a run job on what a poll saw: keep polling, answer or wait for tool calls, send tool
outputs, or finish with the result or a classified error."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any

import openai

from schemas.job import JobError, JobRecord, JobStatus, Usage
from schemas.requests import RunRequest
from tasks.backends import ACTIVE, Backend, Snapshot, add_usage
from tasks.run_flow import (
    backend_of,
    end,
    failer,
    first_poll,
    poll_soon,
    request_of,
    task_name,
    watched,
)
from tasks.steps import (
    Guard,
    Services,
    cancel_end,
    each_async,
    ended_by_poll,
    retry_or_fail,
)
from worker import constants as c
from worker.backoff import compute_delay
from worker.errors import classify, rate_limit_wait_of

log = logging.getLogger(__name__)


@dataclass
class Completing:
    """A job whose run completed, waiting for its result to be fetched."""

    record: JobRecord
    backend: Backend
    snap: Snapshot
    body: dict[str, Any]


def advance(svc: Services, job_id: str, body: dict[str, Any]) -> None:
    """Act on what a poll saw: finish, wait for tool outputs, answer them, or keep polling."""
    advance_many(svc, {job_id: body}, lambda _, step: step())


def advance_many(svc: Services, bodies: Mapping[str, dict[str, Any]], guard: Guard) -> None:
    """`advance` for several jobs as one group: their records are read in one round trip, and the results
    of the runs that completed (an Assistants run's messages) are fetched all at once on the lean API path,
    so a batch of ends costs about one request's wait, not one a job."""
    completing: list[Completing] = []
    records = svc.store.jobs.get_many(list(bodies))
    for (job_id, body), record in zip(bodies.items(), records, strict=True):
        guard(job_id, partial(_advance, svc, job_id, record, body, completing))
    results = each_async(svc, completing, lambda api, done: done.backend.result(api, done.record, done.snap))
    for done, got in zip(completing, results, strict=True):
        guard(done.record.id, partial(_complete, svc, done, got))


def _advance(
    svc: Services,
    job_id: str,
    record: JobRecord | None,
    body: dict[str, Any],
    completing: list[Completing],
) -> None:
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
            poll_soon(svc, record, backend, compute_delay(0, svc.policy))
        elif snap.status == "requires_action":
            _tool_calls(svc, record, request, backend, snap)
        elif snap.status == "completed":
            completing.append(Completing(record, backend, snap, body))
        else:
            _finish(svc, record, backend, snap, body.get("learnt_by"))
    except openai.OpenAIError as exc:
        retry_or_fail(svc, record, exc, task_name(c.TASK_FINISH), [job_id, body], failer(svc, job_id))


def _complete(svc: Services, done: Completing, got: dict[str, Any] | BaseException) -> None:
    """Finish a completed run with its fetched result; a failed fetch is retried like any finish."""
    job_id = done.record.id
    if isinstance(got, openai.OpenAIError):
        args = [job_id, done.body]
        retry_or_fail(svc, done.record, got, task_name(c.TASK_FINISH), args, failer(svc, job_id))
    elif isinstance(got, BaseException):
        raise got
    else:
        _finish(svc, done.record, done.backend, done.snap, done.body.get("learnt_by"), got)


def _usage(record: JobRecord, backend: Backend, snap: Snapshot) -> Usage | None:
    if backend.usage_per_round:
        return add_usage(record.usage, snap.usage)
    return snap.usage or record.usage


def _finish(
    svc: Services,
    record: JobRecord,
    backend: Backend,
    snap: Snapshot,
    learnt_by: str | None,
    result: dict[str, Any] | None = None,
) -> None:
    """End the job as its run ended; ``result`` is what a completed run produced (`Backend.result`)."""
    common: dict[str, Any] = {"usage": _usage(record, backend, snap)}
    if learnt_by is not None:
        common["end_learnt_by"] = learnt_by
        _learnt(svc, record, backend, learnt_by)
    status = snap.status
    if status == "completed":
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
    if not watched(svc, backend):
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
    poll_soon(svc, record, backend, delay, waiting=True)


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
                svc, record, exc, task_name(c.TASK_TOOL_OUTPUTS), [job_id, outputs], failer(svc, job_id)
            )
            return
        # The run may have expired or been cancelled meanwhile: let a poll tell what it is now.
        log.warning("tool outputs for job %s refused: %s", job_id, classify(exc).message)
        poll_soon(svc, record, backend, 0.0)
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
    poll_soon(svc, record, backend, first_poll(svc, record, backend))
