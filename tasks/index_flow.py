"""The life of an indexing job: check paths, find or create the store, upload, create file batches,
follow them, retry failed files, finish or cancel. This module holds the start, cancel, end and re-drive
and what the steps share; the preparation (store, uploads, batches) is `tasks.index_prepare`, acting on
a round's end (retries, the result) is `tasks.index_finish`. Plain functions on the run flow's
`Services`; the Celery tasks in `tasks.indexing` only call them.

Every step is safe to run again at any point. What it did is on the job record the moment it did it:
the store id (``remote.vector_store_id``), each batch with its round and slice (``remote.batches``),
uploads in the ``aj:uploads:{job_id}`` hash. A retry reads those and does only what is left, so a
redelivered message neither uploads a file twice nor creates a second batch for the same files.
Each task stays within half its soft time limit and sends ``aj.index.prepare`` for the rest, because
a task running past the broker's visibility timeout would be delivered twice.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any

import openai

from schemas.context import STORED
from schemas.job import JobError, JobRecord, JobStatus
from schemas.requests import VectorStoreBatchRequest
from tasks.index_uploads import bad_paths_error
from tasks.steps import (
    Services,
    cancel_end,
    count_redrive,
    deadline_error,
    retry_or_fail,
    stalled_error,
)
from worker import constants as c
from worker.errors import classify
from worker.paths import check_paths
from worker.polls import BatchPoll

log = logging.getLogger(__name__)

KIND = "index"
PREPARE = c.TASK_PREPARE.format(kind=KIND)
FINISH = c.TASK_FINISH.format(kind=KIND)
CANCEL = c.TASK_CANCEL.format(kind=KIND)


def request_of(record: JobRecord) -> VectorStoreBatchRequest:
    """The job's request as a model (checked at submit, so its rules are not run again)."""
    return VectorStoreBatchRequest.model_validate(record.request, context=STORED)


def set_remote(svc: Services, job_id: str, **updates: Any) -> JobRecord:
    """Record ``updates`` among the job's remote ids and progress marks."""
    return svc.store.jobs.update(job_id, lambda r: r.model_copy(update={"remote": {**r.remote, **updates}}))


def start(svc: Services, job_id: str) -> None:
    """Check every path (all bad ones named in one error, nothing uploaded), mark the job running and
    send the prepare step. Safe to run again."""
    record = svc.store.jobs.get(job_id)
    if record is None or record.status.ended:
        return
    if record.deadline_at and time.time() > record.deadline_at:
        end(svc, job_id, JobStatus.TIMED_OUT, error=deadline_error("its open batches were"))
        return
    if "checked" not in record.remote:
        request = request_of(record)
        bad = check_paths(request.paths)
        if bad and not request.skip_bad_paths:
            end(svc, job_id, JobStatus.FAILED, error=bad_paths_error(bad, len(request.paths)))
            return
        skipped = [{"path": path, "problem": why} for path, why in bad]

        def begin(r: JobRecord) -> JobRecord | None:
            if r.status.ended:
                return None
            r.status = JobStatus.RUNNING
            r.attempts += 1
            r.remote = {**r.remote, "checked": True, "skipped_paths": skipped}
            return r

        record = svc.store.jobs.update(job_id, begin)
        if record.status.ended:
            return
    svc.send(PREPARE, [job_id])


def poll_round(svc: Services, record: JobRecord, round_: int, base: dict[str, int] | None = None) -> None:
    """Put the job on the poll schedule for its round's batches."""
    entry = BatchPoll(
        vector_store_id=record.remote["vector_store_id"],
        open=[b["id"] for b in record.remote.get("batches", []) if b["round"] == round_],
        total=record.progress.total if record.progress else 0,
        base=base or {},
        round=round_,
        deadline=record.deadline_at,
    )
    svc.store.schedule.put(record.id, entry, svc.settings.poll_first)


def retry_base(record: JobRecord, round_: int) -> dict[str, int]:
    """What earlier rounds settled, for a round's progress: in a retry round every other file completed
    and the retried ones count as failed until they recover (see `tasks.index_poll`)."""
    ids = record.remote.get(f"retry_{round_}") or []
    if not round_ or not ids:
        return {}
    total = record.progress.total if record.progress else len(ids)
    return {"completed": total - len(ids), "failed": len(ids)}


def result_of(
    svc: Services, record: JobRecord, failed: dict[str, dict[str, Any]], first_failed: Sequence[str]
) -> dict[str, Any]:
    """The job's result: its store, batches, the store's file counts, the files that failed (with their
    paths and errors), those that recovered in a retry round, and the paths skipped."""
    vs_id = record.remote.get("vector_store_id")
    paths = {file_id: path for path, file_id in svc.store.uploads.recorded(record.id).items()}

    def named(file_id: str) -> dict[str, Any]:
        return {"file_id": file_id, **({"path": paths[file_id]} if file_id in paths else {})}

    counts: dict[str, Any] = {}
    if vs_id:
        counts = svc.client.vector_stores.retrieve(vs_id).file_counts.model_dump()
    return {
        "vector_store_id": vs_id,
        "batches": [
            {
                "id": b["id"],
                "round": b["round"],
                "status": b.get("status"),
                "file_counts": b.get("file_counts"),
            }
            for b in record.remote.get("batches", [])
        ],
        "file_counts": counts,
        "failed": [{**named(fid), "last_error": error} for fid, error in sorted(failed.items())],
        "recovered": [named(fid) for fid in first_failed if fid not in failed],
        "uploaded": len(paths),
        "skipped_paths": record.remote.get("skipped_paths", []),
        "partial": bool(failed),
    }


def cancel(svc: Services, job_id: str, reason: str = "requested") -> None:
    """Cancel the job's open batches and end it: `cancelled` on request, `timed_out` past its deadline."""
    record = svc.store.jobs.get(job_id)
    if record is None or record.status.ended:
        return
    vs_id = record.remote.get("vector_store_id")
    round_ = int(record.remote.get("round", 0))
    open_ids = [
        b["id"]
        for b in record.remote.get("batches", [])
        if b["round"] == round_ and b.get("status") in (None, "in_progress")
    ]
    try:
        cancelled = cancel_batches(svc, vs_id, open_ids) if vs_id else []
    except openai.OpenAIError as exc:
        retry_or_fail_job(svc, job_id, exc, CANCEL, [job_id, reason])
        return
    result = {
        "vector_store_id": vs_id,
        "batches": [{"id": b["id"], "round": b["round"]} for b in record.remote.get("batches", [])],
        "cancelled_batches": cancelled,
        "skipped_paths": record.remote.get("skipped_paths", []),
        "partial": True,
    }
    final, error = cancel_end(reason, "its open batches were")
    end(svc, job_id, final, result=result, error=error)


def cancel_batches(svc: Services, vs_id: str, batch_ids: Sequence[str]) -> list[str]:
    """Cancel each batch still open; the ids cancelled. A batch that already ended (400/404) is skipped;
    a retryable error propagates so the caller retries the whole (idempotent) cancel."""
    cancelled = []
    for batch_id in batch_ids:
        try:
            svc.client.vector_stores.file_batches.cancel(batch_id, vector_store_id=vs_id)
        except openai.APIStatusError as exc:
            if classify(exc).retryable:
                raise
            continue
        cancelled.append(batch_id)
    return cancelled


def end(svc: Services, job_id: str, status: JobStatus, *, dead: bool = False, **fields: Any) -> None:
    """Write the job's end state (which takes it off the poll schedule)."""
    svc.store.jobs.try_set_status(job_id, status, dead=dead, **fields)


def fail(svc: Services, job_id: str, error: JobError) -> None:
    """End the job ``failed`` with ``error`` and dead-letter it (a step gave up, or it stalled for good)."""
    end(svc, job_id, JobStatus.FAILED, error=error, dead=True)


def redrive(svc: Services, job_id: str) -> None:
    """Send on a job the watchdog found stopped: poll its round's batches when they all exist, else send
    the step it was in (start or prepare). One stall too many ends it ``failed`` with code ``stalled``."""

    record = count_redrive(svc, job_id)
    if record is None:
        return
    if record.redrives > svc.settings.max_redrives:
        fail(svc, job_id, stalled_error(record.redrives - 1))
    elif record.remote.get("prepared"):
        round_ = int(record.remote.get("round", 0))
        poll_round(svc, record, round_, retry_base(record, round_))
    elif record.status == JobStatus.QUEUED:
        svc.send(c.TASK_START.format(kind=KIND), [[job_id]])
    else:
        svc.send(PREPARE, [job_id])


def retry_or_fail_job(
    svc: Services, job_id: str, exc: openai.OpenAIError, task: str, args: list[Any]
) -> None:
    """A step's API call failed: the shared retry rule (`tasks.steps.retry_or_fail`), failing the job
    (dead-lettered when its retries are spent) otherwise."""

    def fail(error: JobError) -> None:
        log.warning("indexing job %s failed: %s", job_id, error.message)
        end(svc, job_id, JobStatus.FAILED, error=error, dead=error.retryable)

    retry_or_fail(svc, svc.store.jobs.require(job_id), exc, task, args, fail)
