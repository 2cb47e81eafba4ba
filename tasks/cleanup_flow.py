"""The life of a clean-up job: plan once, then delete in paced, bounded chunks.

The plan (`tasks.cleanup_targets`) decides what each target may delete; the deletions go into a Redis
list and successive ``aj.cleanup.start`` tasks work through it, each stopping at half the soft time limit
and sending the next. Why chunks rather than one long task: at a few deletes a second a sweep of
thousands of objects outlasts any time limit, and a time limit must stay below the broker's visibility
timeout or the message is delivered twice. A dry run stops after the plan and lists what it found.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import openai

from schemas.context import STORED
from schemas.job import JobError, JobRecord, JobStatus, Progress
from schemas.requests import CleanupRequest, CleanupTarget
from tasks import cleanup_targets as targets
from tasks.assistants import beta
from tasks.cleanup_targets import Findings, Scope
from tasks.steps import Services, after_lease, cancel_end, count_redrive, retry_later, stalled_error
from worker import constants as c
from worker.errors import classify
from worker.store.cleanup import Pace
from worker.store.inventory import Conversational, Inventory

KIND = "cleanup"


def wait_for_slot(pace: Pace, until: float) -> bool:
    """Sleep until the next free slot of the shared delete rate; False, without sleeping, when the slot
    is past ``until`` (monotonic)."""
    delay = pace.reserve()
    if time.monotonic() + delay > until:
        return False
    time.sleep(delay)
    return True


DELETERS: dict[CleanupTarget, Callable[[openai.OpenAI, str], Any]] = {
    CleanupTarget.THREADS: lambda api, object_id: beta(api).threads.delete(object_id),
    CleanupTarget.CONVERSATIONS: lambda api, object_id: api.conversations.delete(object_id),
    CleanupTarget.VECTOR_STORES: lambda api, object_id: api.vector_stores.delete(object_id),
    CleanupTarget.FILES: lambda api, object_id: api.files.delete(object_id),
}
"""The API call that deletes one object of each remote target."""


def forget(inventory: Inventory, target: CleanupTarget, object_id: str) -> None:
    """Take a deleted (or vanished) object out of the inventory."""
    if target == CleanupTarget.THREADS:
        inventory.forget(Conversational.THREAD, object_id)
    elif target == CleanupTarget.CONVERSATIONS:
        inventory.forget(Conversational.CONVERSATION, object_id)
    elif target == CleanupTarget.VECTOR_STORES:
        inventory.forget_store(object_id)
    elif target == CleanupTarget.FILES:
        inventory.forget_file(object_id)


@dataclass(frozen=True)
class Outcome:
    """What became of one planned delete."""

    what: str
    """``deleted``, ``already_gone``, ``failed`` or ``skipped``."""
    detail: dict[str, Any] | None = None
    """The error (failed) or the reason (skipped)."""


def delete_one(
    svc: Services, pace: Pace, target: CleanupTarget, object_id: str, scope: Scope, until: float
) -> Outcome | None:
    """Delete one object at the shared pace: a 404 counts as already gone, any other error is the item's
    own. None when the pace leaves no slot before ``until``: the caller stops its chunk there."""
    reason = targets.still_deletable(svc.store, target, object_id, scope)
    if reason is not None:
        return Outcome("skipped", {"id": object_id, "reason": reason})
    if not wait_for_slot(pace, until):
        return None
    try:
        DELETERS[target](svc.client, object_id)
    except openai.NotFoundError:
        forget(svc.store.inventory, target, object_id)
        return Outcome("already_gone")
    except openai.APIError as exc:
        error = classify(exc)
        return Outcome("failed", {"id": object_id, "code": error.code, "message": error.message})
    forget(svc.store.inventory, target, object_id)
    return Outcome("deleted")


# --- the job -----------------------------------------------------------------------------------
def run(svc: Services, job_id: str) -> None:
    """Carry a clean-up job one step: plan it if new, then delete until the chunk's time is up."""
    record = svc.store.jobs.get(job_id)
    if record is None or record.status.ended:
        return
    request = CleanupRequest.model_validate(record.request, context=STORED)
    scope = scope_of(svc, request)
    # One task at a time works on a job: a duplicate message must not plan twice or delete in parallel.
    with svc.store.leases.hold(job_id, svc.settings.task_time_limit) as mine:
        if not mine:
            after_lease(svc, job_id, c.TASK_START.format(kind=KIND), [[job_id]])
            return
        if record.status == JobStatus.QUEUED:
            record = svc.store.jobs.set_status(job_id, JobStatus.RUNNING)
        if record.progress is None:
            planned = plan(svc, record, request, scope)
            if planned is None or planned.status.ended:
                return
            record = planned
        more = work(svc, record, scope)
    if more:
        svc.send(c.TASK_START.format(kind=KIND), [[record.id]])


def scope_of(svc: Services, request: CleanupRequest) -> Scope:
    """The limits in force for ``request``: its overrides, else the settings."""
    s = svc.settings
    return Scope(
        now=time.time(),
        idle_s=request.idle_s or s.thread_idle_s,
        store_idle_s=request.store_idle_s or s.store_idle_s,
        include_unmanaged=request.include_unmanaged or s.cleanup_include_unmanaged,
        result_ttl=s.result_ttl,
    )


def plan(svc: Services, record: JobRecord, request: CleanupRequest, scope: Scope) -> JobRecord | None:
    """Find every target's candidates, queue the deletes in Redis, write the plan into the result; None
    when a listing failed in a way worth retrying (the plan is made again later).

    A dry run ends here, completed, listing what it would delete.
    """
    result: dict[str, Any] = {"dry_run": request.dry_run, "targets": {}}
    todo: list[dict[str, Any]] = []
    for target in request.targets:
        try:
            found = targets.find(target, svc.store, svc.client, scope, request.dry_run)
        except openai.OpenAIError as exc:
            # A listing is read-only: plan again later while that can help (a rate limit is waited out).
            if retry_later(svc, record, exc, c.TASK_START.format(kind=KIND), [[record.id]]):
                return None
            # A permanent error, or the retries spent: that target's error is reported, the others run.
            error = classify(exc)
            result["targets"][target.value] = {"error": {"code": error.code, "message": error.message}}
            continue
        result["targets"][target.value] = report(found, request.dry_run)
        todo += [{"t": target.value, "id": object_id} for object_id in found.delete]
        if not request.dry_run:
            for object_id in found.gone:
                forget(svc.store.inventory, target, object_id)
    _totals(result)
    keep_s = int(max((record.deadline_at or time.time()) - time.time(), 0)) + 3600
    svc.store.cleanup.plan(record.id, [] if request.dry_run else todo, keep_s)
    total = 0 if request.dry_run else len(todo)
    progress = Progress(total=total, in_progress=total)
    if request.dry_run or not todo:
        return svc.store.jobs.set_status(record.id, JobStatus.COMPLETED, result=result, progress=progress)
    return svc.store.jobs.update(
        record.id, lambda r: r.model_copy(update={"result": result, "progress": progress})
    )


def report(found: Findings, dry_run: bool) -> dict[str, Any]:
    """One target's part of the result: counts, the reasons for skips, and the ids (a bounded list)."""
    cap = c.CLEANUP_LISTED_MAX
    part: dict[str, Any] = {
        "candidates": len(found.delete),
        "deleted": 0,
        "already_gone": 0 if dry_run else len(found.gone),
        "failed": 0,
        "skipped": {reason: len(ids) for reason, ids in found.skipped.items()},
        "skipped_ids": {reason: ids[:cap] for reason, ids in found.skipped.items()},
        "errors": [],
    }
    if found.counts:
        part.update(found.counts)
        part["candidates"] = sum(found.counts.values())
        part["deleted"] = 0 if dry_run else part["candidates"]
    if dry_run:
        part["would_delete"] = found.delete[:cap]
    else:
        part["deleted_ids"] = []
    return part


def _totals(result: dict[str, Any]) -> None:
    parts = [p for p in result["targets"].values() if "error" not in p]
    result["deleted"] = sum(p["deleted"] + p["already_gone"] for p in parts)
    result["skipped"] = sum(sum(p["skipped"].values()) for p in parts)
    result["failed"] = sum(p["failed"] for p in parts)


def work(svc: Services, record: JobRecord, scope: Scope) -> bool:
    """Delete from the job's list until it is empty (the job completes), the chunk's time is up (True:
    the caller sends the next chunk), or the job's deadline passes or a cancel arrives (the job ends)."""
    todo = svc.store.cleanup
    until = time.monotonic() + svc.settings.task_soft_time_limit / 2
    pace = svc.store.pace(svc.settings.cleanup_deletes_per_s)
    done: list[tuple[CleanupTarget, str, Outcome]] = []
    while True:
        current = svc.store.jobs.get(record.id)
        if current is None or current.status.ended:
            return (
                False  # cancelled (or expired) meanwhile: what was deleted so far is lost from the count only
            )
        if record.deadline_at and time.time() > record.deadline_at:
            _flush(svc, record.id, done, end=JobStatus.TIMED_OUT)
            todo.drop(record.id)
            return False
        item = todo.head(record.id)
        if item is None:
            _flush(svc, record.id, done, end=JobStatus.COMPLETED)
            todo.drop(record.id)
            return False
        target = CleanupTarget(item["t"])
        outcome = (
            None if time.monotonic() >= until else delete_one(svc, pace, target, item["id"], scope, until)
        )
        if outcome is None:
            return _flush(svc, record.id, done, end=None)
        todo.pop(record.id)
        done.append((target, item["id"], outcome))


def _flush(
    svc: Services, job_id: str, done: list[tuple[CleanupTarget, str, Outcome]], end: JobStatus | None
) -> bool:
    """Add a chunk's outcomes to the job's result (ending it when ``end`` is given); False if it had ended."""

    def change(record: JobRecord) -> JobRecord | None:
        if record.status.ended:
            return None
        result = dict(record.result or {})
        progress = (record.progress or Progress()).model_copy()
        for target, object_id, outcome in done:
            _count(result["targets"][target.value], object_id, outcome)
            progress.in_progress -= 1
            if outcome.what == "failed":
                progress.failed += 1
            else:
                progress.completed += 1
        _totals(result)
        record.result, record.progress = result, progress
        if end is not None:
            record.status = end
            if end == JobStatus.TIMED_OUT:
                record.error = JobError(
                    code="deadline_exceeded",
                    message="the clean-up passed its deadline; what it had deleted by then is in the result",
                )
        return record

    before = svc.store.jobs.get(job_id)
    if before is None or before.status.ended:
        return False
    svc.store.jobs.update(job_id, change, event="job.progress" if end is None else None)
    return True


def _count(part: dict[str, Any], object_id: str, outcome: Outcome) -> None:
    cap = c.CLEANUP_LISTED_MAX
    if outcome.what == "deleted":
        part["deleted"] += 1
        if len(part["deleted_ids"]) < cap:
            part["deleted_ids"].append(object_id)
    elif outcome.what == "already_gone":
        part["already_gone"] += 1
    elif outcome.what == "failed":
        part["failed"] += 1
        if len(part["errors"]) < cap and outcome.detail:
            part["errors"].append(outcome.detail)
    elif outcome.detail:
        reason = str(outcome.detail["reason"])
        part["skipped"][reason] = part["skipped"].get(reason, 0) + 1
        part["skipped_ids"].setdefault(reason, []).append(object_id)
    part["candidates"] -= 1 if outcome.what == "skipped" else 0


def cancel(svc: Services, job_id: str, reason: str = "requested") -> None:
    """Stop a clean-up job: it ends cancelled (or timed out) with what it deleted so far; the next chunk
    stops at once."""
    final, error = cancel_end(reason, "its remaining deletes were")
    record = svc.store.jobs.try_set_status(job_id, final, error=error)
    if record is not None:
        svc.store.cleanup.drop(job_id)


def fail(svc: Services, job_id: str, error: JobError) -> None:
    """End the job ``failed`` with ``error`` and dead-letter it (a step gave up, or it stalled for good)."""
    if svc.store.jobs.try_set_status(job_id, JobStatus.FAILED, error=error, dead=True) is not None:
        svc.store.cleanup.drop(job_id)


def redrive(svc: Services, job_id: str) -> None:
    """Send on a job the watchdog found stopped: its next chunk (which plans it first if it never was)."""
    record = count_redrive(svc, job_id)
    if record is None:
        return
    if record.redrives > svc.settings.max_redrives:
        fail(svc, job_id, stalled_error(record.redrives - 1))
    else:
        svc.send(c.TASK_START.format(kind=KIND), [[job_id]])
