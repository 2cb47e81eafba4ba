"""Acting on the end of an indexing job's round of file batches: name the files that failed, retry them
in a new round when the request asks, else write the result and end the job."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import openai

from schemas.job import JobError, JobRecord, JobStatus, Progress
from schemas.requests import VectorStoreBatchRequest
from tasks.index_flow import (
    FINISH,
    end,
    poll_round,
    request_of,
    result_of,
    retry_base,
    retry_or_fail_job,
    set_remote,
)
from tasks.index_poll import with_progress
from tasks.index_prepare import create_batches
from tasks.steps import (
    Services,
    ended_by_poll,
)

log = logging.getLogger(__name__)


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
        retry_or_fail_job(svc, job_id, exc, FINISH, [job_id, body])


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
        record = set_remote(svc, record.id, first_failed=sorted(failed))
    if failed and round_ < request.retry_failed and not record.cancel_requested:
        _retry_round(svc, record, request, failed, round_ + 1)
        return
    result = result_of(svc, record, failed, record.remote.get("first_failed", []))
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
        record = set_remote(svc, record.id, **{key: sorted(failed)})
    ids: list[str] = record.remote[key]
    # No time budget here: a retry round is a few batches at most (the failed files only).
    create_batches(svc, record, request, ids, round_, float("inf"))
    record = set_remote(svc, record.id, round=round_)
    poll_round(svc, record, round_, retry_base(record, round_))
