"""Preparing an indexing job, a piece per task: find or create its vector store, upload a chunk of its
files, create the file batches; each piece sends the next, and the last puts the job on the poll schedule.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Sequence
from enum import StrEnum
from typing import Any

import openai

from schemas.job import JobError, JobRecord, JobStatus, Progress
from schemas.limits import METADATA_MAX_PAIRS, RESERVED_METADATA_KEY
from schemas.requests import VectorStoreBatchRequest
from tasks.index_flow import (
    PREPARE,
    cancel,
    cancel_batches,
    end,
    poll_round,
    request_of,
    result_of,
    retry_or_fail_job,
    set_remote,
)
from tasks.index_poll import with_progress
from tasks.index_uploads import Uploader
from tasks.steps import (
    Services,
    after_lease,
    defer,
    soft_limit_held,
)
from worker import constants as c
from worker.backoff import error_delay
from worker.openai_client import request_timeout
from worker.store.inventory import managed_metadata

log = logging.getLogger(__name__)

STORE_LOOKUP_LIMIT = 100
"""Newest stores searched for one a killed start created but never recorded."""


def plan_batches(file_ids: Sequence[str], size: int) -> list[list[str]]:
    """The file ids cut into batches of at most ``size``, in order (pure)."""
    return [list(file_ids[i : i + size]) for i in range(0, len(file_ids), size)]


def _budget(svc: Services) -> float:
    # Half the soft limit leaves room for in-flight uploads to return and the record to be written.
    return svc.settings.task_soft_time_limit * 0.5


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
        retry_or_fail_job(svc, job_id, exc, PREPARE, [job_id])
        return
    if not mine:
        after_lease(svc, job_id, PREPARE, [job_id])
        return
    # Sent only once the lock is free, so the next task is never turned away by this one.
    if step == Step.AGAIN:
        svc.send(PREPARE, [job_id])
    elif step == Step.POLL:
        poll_round(svc, svc.store.jobs.require(job_id), 0)
        set_remote(svc, job_id, prepared=True)  # after the poll is on the schedule, so none is lost


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
        end(svc, record.id, JobStatus.FAILED, result=result_of(svc, record, {}, []), error=error)
        return Step.NONE
    svc.store.jobs.update(record.id, lambda r: with_progress(r, Progress(total=len(ids))))
    if not create_batches(svc, record, request, ids, 0, until):
        return Step.AGAIN
    return Step.NONE if svc.store.jobs.require(record.id).status.ended else Step.POLL


def _ensure_store(svc: Services, record: JobRecord, request: VectorStoreBatchRequest) -> JobRecord:
    if record.remote.get("vector_store_id"):
        return record
    if request.vector_store_id:
        return set_remote(svc, record.id, vector_store_id=request.vector_store_id)
    found = _find_store(svc, record.id) if record.remote.get("store_pending") else None
    if found is None:
        set_remote(svc, record.id, store_pending=True)
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
    return set_remote(svc, record.id, vector_store_id=found, store_created=True)


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
    set_remote(svc, record.id, upload_errors=errors)
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


def create_batches(
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
        with soft_limit_held(svc.settings):  # cut off between the create and its record, a retry makes two
            batch = svc.client.vector_stores.file_batches.create(vs_id, file_ids=chunk, **params)
            entry = {"id": batch.id, "round": round_, "slice": index, "files": len(chunk)}
            record = svc.store.jobs.update(record.id, functools.partial(_add_batch, entry=entry))
        if record.status.ended:  # cancelled meanwhile: do not leave this batch running
            cancel_batches(svc, vs_id, [batch.id])
            return True
    return True


def _add_batch(record: JobRecord, entry: dict[str, Any]) -> JobRecord:
    record.remote = {**record.remote, "batches": [*record.remote.get("batches", []), entry]}
    return record
