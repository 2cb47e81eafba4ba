"""Starting a run job: take its thread (or wait, fail or interrupt per its strategy), create the remote
run under the job's step lease, schedule the first poll; and create again a response stuck ``queued``."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

import openai

from schemas.job import JobError, JobRecord, JobStatus
from schemas.requests import RunRequest, RunStrategy
from tasks.backends import Backend
from tasks.run_flow import (
    backend_of,
    end,
    fail,
    failer,
    first_poll,
    first_polls,
    has_remote,
    poll_entry,
    poll_soon,
    release,
    request_cancel,
    request_of,
    task_name,
)
from tasks.steps import (
    Guard,
    Outcomes,
    Services,
    after_lease,
    deadline_error,
    defer,
    each_async,
    retry_or_fail,
    soft_limit_held,
)
from worker import constants as c
from worker.backoff import compute_delay
from worker.polls import TaskDue
from worker.store.threads import Turn

log = logging.getLogger(__name__)


@dataclass
class Starting:
    """A job of a group being started: its record as last written, its request and backend."""

    record: JobRecord
    request: RunRequest
    backend: Backend
    maybe_created: bool = False
    """An earlier attempt began a create and never learnt its outcome: the run may exist."""

    @property
    def id(self) -> str:
        """The job's id."""
        return self.record.id


def start_many(svc: Services, job_ids: Sequence[str], guard: Guard) -> None:
    """Start run jobs as one group: take each one's thread (or wait, fail or interrupt per its strategy),
    create the remote runs with up to `Settings.start_concurrency` API calls in flight at once, schedule
    the first polls. Safe to run again at any point, and twice at once: each create is done under the
    job's step lease, so a duplicate message never creates a second run.

    The Redis work of the group is folded: the records are read in one round trip, the leases taken in
    one, and each step's writes (the start, the ids of created conversations or threads, the run ids and
    first polls) sent together, a handful of round trips for the whole group rather than a dozen a job."""
    ready: list[Starting] = []
    for record in svc.store.jobs.get_many(job_ids):
        if record is not None:
            guard(record.id, partial(_admit, svc, record, ready))
    if not ready:
        return
    tokens = svc.store.leases.take([s.id for s in ready], svc.settings.task_time_limit)
    for s in ready:
        if s.id not in tokens:
            after_lease(svc, s.id, task_name(c.TASK_START), [[s.id]])
    try:
        group = _begin_all(svc, [s for s in ready if s.id in tokens], guard)
        group = _prepare_all(svc, group, guard)
        _create_all(svc, group, guard)
    finally:
        svc.store.leases.give_back(tokens)


def _admit(svc: Services, record: JobRecord, ready: list[Starting]) -> None:
    """What a start decides before the create: nothing to do (ended, or created already), past its
    deadline, waiting for its thread; else the job joins ``ready``."""
    if record.status.ended:
        return
    request = request_of(record)
    backend = backend_of(request)
    if has_remote(record):
        _ensure_polled(svc, record, backend)
        return
    if record.deadline_at and time.time() > record.deadline_at:
        end(svc, record.id, JobStatus.TIMED_OUT, error=deadline_error("its remote run was"))
        return
    if not _take_thread(svc, record, request, backend):
        return
    svc.store.inventory.record_used(dict(request))  # a given thread or conversation, for the clean-up
    ready.append(Starting(record, request, backend))


def _begin_all(svc: Services, group: list[Starting], guard: Guard) -> list[Starting]:
    """Mark the group's jobs running, each with one more attempt and "creating" set until its create is
    known to have happened or not (so a later attempt knows to look); those another holder created
    meanwhile, or that ended while they waited, drop out (an ended one frees its thread)."""
    maybe: dict[str, bool] = {}

    def begin(record: JobRecord) -> JobRecord | None:
        if record.status.ended or has_remote(record):
            return None
        # An earlier attempt that began a create and never learnt its outcome may have made the run.
        maybe[record.id] = bool(record.remote.get("creating")) or record.attempts > 0
        record.status = JobStatus.RUNNING
        record.attempts += 1
        record.remote["creating"] = True
        return record

    updated = svc.store.jobs.update_many({s.id: begin for s in group})
    begun = []
    for s in group:
        record = updated.records.get(s.id)
        if record is None:
            guard(s.id, partial(_raise, updated.errors[s.id]))
        elif record.status.ended:
            release(svc, record)
        elif not has_remote(record):
            begun.append(Starting(record, s.request, s.backend, maybe[s.id]))
    return begun


def _prepare_all(svc: Services, group: list[Starting], guard: Guard) -> list[Starting]:
    """Create the threads or conversations the group's runs need (at once) and record their ids before
    any run is created there, so a retried start reuses them; the jobs still to create."""
    with soft_limit_held(svc.settings):
        outcomes = each_async(svc, group, lambda api, s: s.backend.prepare(api, s.record, s.request))
        created, saved = _record_prepared(svc, group, outcomes)
    ready = []
    for s, got in zip(group, outcomes, strict=True):
        if isinstance(got, BaseException):
            guard(s.id, partial(_create_failed, svc, s, got))
        elif s.id in saved:
            ready.append(Starting(saved[s.id], s.request, s.backend, s.maybe_created))
        elif s.id in created:
            guard(s.id, partial(_raise, _unrecorded(s.id)))
        else:
            ready.append(s)
    return ready


def _record_prepared(
    svc: Services, group: list[Starting], outcomes: Outcomes
) -> tuple[dict[str, dict[str, Any]], dict[str, JobRecord]]:
    """Record the ids of the threads or conversations created for the group, in the inventory too, and
    hold those threads; what was created and the records written."""
    created = {s.id: got for s, got in zip(group, outcomes, strict=True) if isinstance(got, dict) and got}
    saved = _save_remote(svc, created) if created else {}
    if created:
        svc.store.inventory.record_created_many(created.values())
        # A thread this job created: hold it, so later jobs on it queue behind this one.
        held = [
            (str(ids.get("thread_id") or ids.get("conversation_id")), s.id)
            for s in group
            if (ids := created.get(s.id)) and s.backend.lock_key(s.request, {}) is None
        ]
        svc.store.threads.acquire_many(held, RunStrategy.ENQUEUE.value)
    return created, saved


def _create_all(svc: Services, group: list[Starting], guard: Guard) -> None:
    """Create the group's runs (at once), record their ids and schedule their first polls; the task's soft
    time limit waits for the ids to be recorded (`soft_limit_held`)."""
    with soft_limit_held(svc.settings):
        outcomes = each_async(
            svc, group, lambda api, s: s.backend.create(api, s.record, s.request, s.maybe_created)
        )
        _record_created(svc, group, outcomes, guard)


def _record_created(svc: Services, group: list[Starting], outcomes: Outcomes, guard: Guard) -> None:
    """Record the runs created for the group and schedule their first polls; a job whose create failed
    goes the way a failed start goes."""
    pairs = zip(group, outcomes, strict=True)
    created = {s.id: {**got, "creating": False} for s, got in pairs if isinstance(got, dict)}
    saved = _save_remote(svc, created, retries=0) if created else {}
    polled = [(saved[s.id], s.backend) for s in group if s.id in saved]
    delays = first_polls(svc, polled)
    svc.store.schedule.put_many(
        (record.id, poll_entry(svc, record, backend), delay)
        for (record, backend), delay in zip(polled, delays, strict=True)
    )
    for s, got in zip(group, outcomes, strict=True):
        if isinstance(got, BaseException):
            guard(s.id, partial(_create_failed, svc, s, got))
        elif s.id not in saved:
            guard(s.id, partial(_raise, _unrecorded(s.id)))
        elif saved[s.id].cancel_requested:
            svc.send(task_name(c.TASK_CANCEL), [s.id, "requested"])


def _save_remote(svc: Services, ids: dict[str, dict[str, Any]], **fields: Any) -> dict[str, JobRecord]:
    """Record remote ids (and ``fields``) on their jobs, folded; the records written."""

    def merged(updates: dict[str, Any]) -> Callable[[JobRecord], JobRecord]:
        return lambda r: r.model_copy(update={"remote": {**r.remote, **updates}, **fields})

    return svc.store.jobs.update_many({job_id: merged(u) for job_id, u in ids.items()}).records


def _create_failed(svc: Services, s: Starting, exc: BaseException) -> None:
    """A create (or what it needed first) failed: an API error goes the way every start's does (retried
    later, waited out or failed with its code); anything else is this job's alone (see `Guard`)."""
    if not isinstance(exc, openai.OpenAIError):
        raise exc
    if isinstance(exc, openai.APIStatusError):  # the server answered: nothing was created
        _save_remote(svc, {s.id: {"creating": False}})
    _start_failed(svc, svc.store.jobs.require(s.id), exc)


def _raise(exc: BaseException) -> None:
    raise exc


def _unrecorded(job_id: str) -> RuntimeError:
    """Why a job of a group stops: what was created for it could not be recorded on its record."""
    return RuntimeError(f"job {job_id}: the ids of what was created for it could not be recorded")


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


def requeue(svc: Services, job_id: str, stuck: str | None = None) -> None:
    """The job's background response (``stuck``) stayed ``queued`` past `Settings.queued_stuck_after`:
    cancel it and create it again, once (recorded on the job with a ``job.requeued`` event); stuck a second
    time, the job fails with code ``stuck_queued``. A message for a response the job no longer waits on
    (a retry or a second delivery after the job was requeued) does nothing."""
    record = svc.store.jobs.get(job_id)
    if record is None or record.status.ended or not has_remote(record):
        return
    if stuck is not None and record.remote.get("response_id") != stuck:
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
        remote = {k: v for k, v in record.remote.items() if k != "response_id"}
        fresh = record.model_copy(update={"remote": remote})
        with soft_limit_held(svc.settings):  # cut off between the create and its record, a retry makes two
            try:
                remote = svc.api.run(lambda api: backend.create(api, fresh, request, False))
            except openai.OpenAIError as exc:
                args = [job_id, stuck]
                retry_or_fail(svc, record, exc, task_name(c.TASK_REQUEUE), args, failer(svc, job_id))
                return
            remote.pop("rounds", None)  # the rounds so far still count
            record = svc.store.jobs.update(
                job_id,
                lambda r: r.model_copy(update={"remote": {**r.remote, **remote, "requeued_from": stuck}}),
                event="job.requeued",
                data={"stuck": stuck, "response_id": remote["response_id"]},
            )
            poll_soon(svc, record, backend, first_poll(svc, record, backend))
