"""The life of an indexing job: check paths, find or create the store, upload, create file batches,
follow them, retry failed files, finish or cancel. Plain functions on the run flow's `Services`; the
Celery tasks in `tasks.indexing` only call them.

Every step is safe to run again at any point. What it did is on the job record the moment it did it:
the store id (``remote.vector_store_id``), each batch with its round and slice (``remote.batches``),
uploads in the ``aj:uploads:{job_id}`` hash. A retry reads those and does only what is left, so a
redelivered message neither uploads a file twice nor creates a second batch for the same files.
Each task stays within half its soft time limit and sends ``aj.index.prepare`` for the rest, because
a task running past the broker's visibility timeout would be delivered twice.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Sequence
from enum import StrEnum
from typing import Any

import openai

from schemas.context import STORED
from schemas.job import JobError, JobRecord, JobStatus, Progress
from schemas.limits import METADATA_MAX_PAIRS, RESERVED_METADATA_KEY
from schemas.requests import VectorStoreBatchRequest
from tasks.index_poll import with_progress
from tasks.index_uploads import Uploader, bad_paths_error
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
from worker.backoff import error_delay
from worker.errors import classify
from worker.openai_client import request_timeout
from worker.paths import check_paths
from worker.polls import BatchPoll
from worker.store.inventory import managed_metadata

log = logging.getLogger(__name__)

KIND = "index"
PREPARE = c.TASK_PREPARE.format(kind=KIND)
FINISH = c.TASK_FINISH.format(kind=KIND)
CANCEL = c.TASK_CANCEL.format(kind=KIND)

STORE_LOOKUP_LIMIT = 100
"""Newest stores searched for one a killed start created but never recorded."""


def request_of(record: JobRecord) -> VectorStoreBatchRequest:
    """The job's request as a model (checked at submit, so its rules are not run again)."""
    return VectorStoreBatchRequest.model_validate(record.request, context=STORED)


def plan_batches(file_ids: Sequence[str], size: int) -> list[list[str]]:
    """The file ids cut into batches of at most ``size``, in order (pure)."""
    return [list(file_ids[i : i + size]) for i in range(0, len(file_ids), size)]


def _budget(svc: Services) -> float:
    # Half the soft limit leaves room for in-flight uploads to return and the record to be written.
    return svc.settings.task_soft_time_limit * 0.5


def _set_remote(svc: Services, job_id: str, **updates: Any) -> JobRecord:
    return svc.store.jobs.update(job_id, lambda r: r.model_copy(update={"remote": {**r.remote, **updates}}))


# --- start ------------------------------------------------------------------------------------
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


# --- prepare: store, uploads, batches ---------------------------------------------------------
def prepare(svc: Services, job_id: str) -> None:
    """Do the next piece of preparation: the store, a chunk of uploads, or the batches; then either
    send itself again for the rest or put the job on the poll schedule."""
    record = svc.store.jobs.get(job_id)
    if record is None or record.status.ended or record.remote.get("prepared"):
        return  # a redelivered prepare of a job already polled must not restart its rounds
    if record.deadline_at and time.time() > record.deadline_at:
        cancel(svc, job_id, "deadline")
        return
    until = time.monotonic() + _budget(svc)
    try:
        with svc.store.leases.hold(job_id, svc.settings.task_time_limit) as mine:
            # Another task holding the lock sends whatever follows; ours would only race it.
            step = _prepare_step(svc, record, until) if mine else Step.NONE
    except openai.OpenAIError as exc:
        _retry_or_fail(svc, job_id, exc, PREPARE, [job_id])
        return
    # Sent only once the lock is free, so the next task is never turned away by this one.
    if step == Step.AGAIN:
        svc.send(PREPARE, [job_id])
    elif step == Step.POLL:
        _poll_round(svc, svc.store.jobs.require(job_id), 0)
        _set_remote(svc, job_id, prepared=True)  # after the poll is on the schedule, so none is lost


class Step(StrEnum):
    """What follows a piece of preparation."""

    NONE = "none"
    """Nothing now: the job ended, or a retry is already on the schedule."""
    AGAIN = "again"
    """More to do: send the prepare step again."""
    POLL = "poll"
    """Every batch exists: poll them."""


def _prepare_step(svc: Services, record: JobRecord, until: float) -> Step:
    request = request_of(record)
    record = _ensure_store(svc, record, request)
    step = _upload(svc, record, request, until)
    if step != Step.POLL:
        return step
    record = svc.store.jobs.require(record.id)
    if record.status.ended:
        return Step.NONE
    ids = _file_ids(svc, record, request)
    if not ids:
        error = JobError(code="no_files", message="every path was skipped as bad; there is nothing to index")
        end(svc, record.id, JobStatus.FAILED, result=_result(svc, record, {}, []), error=error)
        return Step.NONE
    svc.store.jobs.update(record.id, lambda r: with_progress(r, Progress(total=len(ids))))
    if not _create_batches(svc, record, request, ids, 0, until):
        return Step.AGAIN
    return Step.NONE if svc.store.jobs.require(record.id).status.ended else Step.POLL


def _ensure_store(svc: Services, record: JobRecord, request: VectorStoreBatchRequest) -> JobRecord:
    if record.remote.get("vector_store_id"):
        return record
    if request.vector_store_id:
        return _set_remote(svc, record.id, vector_store_id=request.vector_store_id)
    found = _find_store(svc, record.id) if record.remote.get("store_pending") else None
    if found is None:
        _set_remote(svc, record.id, store_pending=True)
        new = request.new_store
        assert new is not None  # the request model insists on one of the two
        params: dict[str, Any] = {"metadata": _store_metadata(new.metadata or {}, record.id)}
        for name in ("name", "description"):
            if getattr(new, name) is not None:
                params[name] = getattr(new, name)
        if new.expires_after is not None:
            params["expires_after"] = new.expires_after.model_dump(mode="json")
        if new.chunking_strategy is not None:
            params["chunking_strategy"] = new.chunking_strategy.model_dump(mode="json")
        found = svc.client.vector_stores.create(**params).id
    svc.store.inventory.record_store(found)
    return _set_remote(svc, record.id, vector_store_id=found, store_created=True)


def _store_metadata(given: dict[str, str], job_id: str) -> dict[str, str]:
    """The producer's metadata plus ours (``managed_by`` first) as far as the 16 pairs allow."""
    ours = {**managed_metadata(), RESERVED_METADATA_KEY: job_id}
    room = METADATA_MAX_PAIRS - len(given)
    extra = {k: v for k, v in list(ours.items())[: max(room, 0)] if k not in given}
    return {**given, **extra}


def _find_store(svc: Services, job_id: str) -> str | None:
    """The store a killed earlier attempt created for this job, found by its ``aj_job_id`` metadata."""
    page = svc.client.vector_stores.list(limit=STORE_LOOKUP_LIMIT, order="desc")
    for vs in page.data:
        if (vs.metadata or {}).get(RESERVED_METADATA_KEY) == job_id:
            return vs.id
    return None


def _upload(svc: Services, record: JobRecord, request: VectorStoreBatchRequest, until: float) -> Step:
    """Upload a chunk of what is left of the good paths; `Step.POLL` once all are uploaded."""
    paths = _good_paths(record, request)
    if not paths:
        return Step.POLL
    s = svc.settings
    uploader = Uploader(
        svc.client,
        svc.store.uploads,
        svc.store.inventory,
        record.id,
        concurrency=s.upload_concurrency,
        request_timeout=request_timeout(s),
        progress=lambda done, total: svc.store.jobs.announce(
            record.id, c.UPLOADED_EVENT, {"uploaded": done, "total": total}
        ),
    )
    chunk = uploader.run(paths, max(until - time.monotonic(), 0.0))
    if chunk.error is not None:
        end(svc, record.id, JobStatus.FAILED, error=chunk.error)
        return Step.NONE
    if chunk.remaining == 0:
        return Step.POLL
    if chunk.retry_error is None:
        return Step.AGAIN  # time ran out: carry on in a fresh task
    errors = int(record.remote.get("upload_errors", 0)) + 1
    if errors > s.max_retries:
        end(svc, record.id, JobStatus.FAILED, error=chunk.retry_error, dead=True)
        return Step.NONE
    _set_remote(svc, record.id, upload_errors=errors)
    defer(svc, record.id, PREPARE, [record.id], error_delay(errors, svc.policy))
    return Step.NONE


def _good_paths(record: JobRecord, request: VectorStoreBatchRequest) -> list[str]:
    skipped = {entry["path"] for entry in record.remote.get("skipped_paths", [])}
    return [p for p in request.paths if p not in skipped]


def _file_ids(svc: Services, record: JobRecord, request: VectorStoreBatchRequest) -> list[str]:
    """Every file id to index, in a fixed order (given ids, then uploads in path order), so the
    slices of a retried step are the same as the first time."""
    uploads = svc.store.uploads.recorded(record.id) if request.paths else {}
    from_paths = [uploads[p] for p in _good_paths(record, request)]
    return list(dict.fromkeys([*request.file_ids, *from_paths]))


def _create_batches(
    svc: Services,
    record: JobRecord,
    request: VectorStoreBatchRequest,
    ids: Sequence[str],
    round_: int,
    until: float,
) -> bool:
    """Create the round's batches not yet recorded, recording each id as it is created; True when
    all exist, False when time ran out first."""
    vs_id = record.remote["vector_store_id"]
    have = {b["slice"] for b in record.remote.get("batches", []) if b["round"] == round_}
    params: dict[str, Any] = {}
    if request.attributes is not None:
        params["attributes"] = request.attributes
    strategy = request.chunking_strategy or (
        request.new_store.chunking_strategy if request.new_store else None
    )
    if strategy is not None:
        params["chunking_strategy"] = strategy.model_dump(mode="json")
    for index, chunk in enumerate(plan_batches(ids, svc.settings.batch_size)):
        if index in have:
            continue
        if time.monotonic() > until:
            return False
        batch = svc.client.vector_stores.file_batches.create(vs_id, file_ids=chunk, **params)
        entry = {"id": batch.id, "round": round_, "slice": index, "files": len(chunk)}
        record = svc.store.jobs.update(record.id, functools.partial(_add_batch, entry=entry))
        if record.status.ended:  # cancelled meanwhile: do not leave this batch running
            _cancel_batches(svc, vs_id, [batch.id])
            return True
    return True


def _add_batch(record: JobRecord, entry: dict[str, Any]) -> JobRecord:
    record.remote = {**record.remote, "batches": [*record.remote.get("batches", []), entry]}
    return record


def _poll_round(svc: Services, record: JobRecord, round_: int, base: dict[str, int] | None = None) -> None:
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


# --- finish: failed files, retry rounds, the result -------------------------------------------
def finish(svc: Services, job_id: str, body: dict[str, Any]) -> None:
    """Act on a poll that saw every batch of the round end (or an error, or the deadline): retry the
    failed files in a new round when the request asks, else write the result and end the job."""
    record = svc.store.jobs.get(job_id)
    if record is None or record.status.ended:
        svc.store.schedule.remove(job_id)
        return
    if ended_by_poll(
        body, lambda status, **fields: end(svc, job_id, status, **fields), "its open batches were"
    ):
        return
    try:
        _settle_round(svc, record, body.get("batches") or {})
    except openai.OpenAIError as exc:
        _retry_or_fail(svc, job_id, exc, FINISH, [job_id, body])


def _settle_round(svc: Services, record: JobRecord, seen: dict[str, Any]) -> None:
    request = request_of(record)
    round_ = int(record.remote.get("round", 0))
    current = {b["id"] for b in record.remote.get("batches", []) if b["round"] == round_}
    if not current or set(seen) != current:
        log.info("job %s: ignoring a finish for batches of an earlier round", record.id)
        return
    record = svc.store.jobs.update(record.id, lambda r: _with_counts(r, seen))
    vs_id = record.remote["vector_store_id"]
    batches = [b for b in record.remote.get("batches", []) if b["round"] == round_]
    failed = _failed_files(svc, vs_id, batches)
    if round_ == 0 and "first_failed" not in record.remote:
        record = _set_remote(svc, record.id, first_failed=sorted(failed))
    if failed and round_ < request.retry_failed and not record.cancel_requested:
        _retry_round(svc, record, request, failed, round_ + 1)
        return
    result = _result(svc, record, failed, record.remote.get("first_failed", []))
    total = record.progress.total if record.progress else len(failed)
    final = Progress(completed=total - len(failed), failed=len(failed), total=total)
    svc.store.jobs.update(record.id, lambda r: with_progress(r, final))
    if failed:
        error = JobError(
            code="files_failed",
            message=f"{len(failed)} of {total} files failed to index; "
            "each is listed in the result with its last_error",
        )
        end(svc, record.id, JobStatus.FAILED, result=result, error=error)
    else:
        end(svc, record.id, JobStatus.COMPLETED, result=result)


def _with_counts(record: JobRecord, seen: dict[str, Any]) -> JobRecord:
    batches = [{**b, **seen[b["id"]]} if b["id"] in seen else b for b in record.remote.get("batches", [])]
    record.remote = {**record.remote, "batches": batches}
    return record


def _failed_files(svc: Services, vs_id: str, batches: Sequence[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """file id -> last_error of every file of these batches that failed (or was cancelled)."""
    failed: dict[str, dict[str, Any]] = {}
    for batch in batches:
        counts = batch.get("file_counts") or {}
        for state in ("failed", "cancelled"):
            if not counts.get(state):
                continue
            pages = svc.client.vector_stores.file_batches.list_files(
                batch["id"],
                vector_store_id=vs_id,
                filter=state,
                limit=100,  # type: ignore[arg-type]
            )
            for item in pages:
                error = item.last_error.model_dump() if item.last_error else None
                failed[item.id] = error or {"code": state, "message": f"the file's indexing was {state}"}
    return failed


def _retry_round(
    svc: Services, record: JobRecord, request: VectorStoreBatchRequest, failed: dict[str, Any], round_: int
) -> None:
    """Put the failed files into new batches (round ``round_``) and poll them."""
    key = f"retry_{round_}"
    if key not in record.remote:
        record = _set_remote(svc, record.id, **{key: sorted(failed)})
    ids: list[str] = record.remote[key]
    # No time budget here: a retry round is a few batches at most (the failed files only).
    _create_batches(svc, record, request, ids, round_, float("inf"))
    record = _set_remote(svc, record.id, round=round_)
    _poll_round(svc, record, round_, _retry_base(record, round_))


def _retry_base(record: JobRecord, round_: int) -> dict[str, int]:
    """What earlier rounds settled, for a round's progress: in a retry round every other file completed
    and the retried ones count as failed until they recover (see `tasks.index_poll`)."""
    ids = record.remote.get(f"retry_{round_}") or []
    if not round_ or not ids:
        return {}
    total = record.progress.total if record.progress else len(ids)
    return {"completed": total - len(ids), "failed": len(ids)}


def _result(
    svc: Services, record: JobRecord, failed: dict[str, dict[str, Any]], first_failed: Sequence[str]
) -> dict[str, Any]:
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


# --- cancel and end ---------------------------------------------------------------------------
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
        cancelled = _cancel_batches(svc, vs_id, open_ids) if vs_id else []
    except openai.OpenAIError as exc:
        _retry_or_fail(svc, job_id, exc, CANCEL, [job_id, reason])
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


def _cancel_batches(svc: Services, vs_id: str, batch_ids: Sequence[str]) -> list[str]:
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
        _poll_round(svc, record, round_, _retry_base(record, round_))
    elif record.status == JobStatus.QUEUED:
        svc.send(c.TASK_START.format(kind=KIND), [[job_id]])
    else:
        svc.send(PREPARE, [job_id])


def _retry_or_fail(svc: Services, job_id: str, exc: openai.OpenAIError, task: str, args: list[Any]) -> None:
    """A step's API call failed: the shared retry rule (`tasks.steps.retry_or_fail`), failing the job
    (dead-lettered when its retries are spent) otherwise."""

    def fail(error: JobError) -> None:
        log.warning("indexing job %s failed: %s", job_id, error.message)
        end(svc, job_id, JobStatus.FAILED, error=error, dead=error.retryable)

    retry_or_fail(svc, svc.store.jobs.require(job_id), exc, task, args, fail)
