"""The poll of an indexing job's open file batches, in the worker's shared poll loop (op ``batch``).

One schedule entry per job, not per batch: each poll retrieves the job's open batches together, sums
their ``file_counts`` into the job's progress, and hands the job to ``aj.index.finish`` once every batch
of the current round has ended. Deadline and error handling are the runs' (`tasks.poll_outcomes`).

Progress is written from here, not through a Celery message: when the counts changed since the last
poll, the job store's compare-and-set write (which also appends ``job.progress``) runs in the poll
loop's executor thread. That keeps one code path for record writes and events, costs two Redis round
trips only when something changed, and spares the broker a message per poll and the schedule a
release-and-put per poll; indexing jobs are few and long, so these writes are rare next to run polls.
The write keeps the largest counts seen (`merge_progress`), so progress never goes backwards even
when polls or pollers race.

During a retry round ``base`` carries what earlier rounds settled: files retried are still counted in
``failed`` until they recover, and are also ``in_progress`` while they index again, so
``completed + failed`` (what the progress bar shows as done) never shrinks.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Iterable, Mapping
from typing import Any

import aiohttp
import orjson

from schemas.job import JobRecord, Progress
from tasks.poll_outcomes import failed, http_error, past_deadline, poll_after
from worker import constants as c
from worker.backoff import compute_delay
from worker.connections import store
from worker.poller import Again, Handoff, Outcome, PollContext
from worker.polls import BatchPoll
from worker.store.schedule import Claim

KIND = "index"
FINISH = c.TASK_FINISH.format(kind=KIND)
CANCEL = c.TASK_CANCEL.format(kind=KIND)
OPEN = frozenset({"in_progress", "cancelling"})
"""Batch statuses that mean: keep polling."""


def batch_progress(counts: Iterable[Mapping[str, int]], total: int, base: Mapping[str, int]) -> Progress:
    """The job's progress from the ``file_counts`` of the current round's batches (pure).

    ``base`` holds ``completed`` and ``failed`` settled by earlier rounds (zeros in the first round);
    cancelled files count as failed.
    """
    completed = failed_now = in_progress = 0
    for count in counts:
        completed += int(count.get("completed", 0))
        failed_now += int(count.get("failed", 0)) + int(count.get("cancelled", 0))
        in_progress += int(count.get("in_progress", 0))
    retried = int(base.get("failed", 0))
    # In a retry round its files were already counted failed; they leave `failed` only by recovering.
    failed_total = retried - completed if retried else failed_now
    return Progress(
        completed=int(base.get("completed", 0)) + completed,
        failed=max(failed_total, 0),
        in_progress=in_progress,
        total=total,
    )


def merge_progress(old: Progress | None, new: Progress) -> Progress | None:
    """``new`` without letting ``completed`` or ``completed + failed`` shrink; None when nothing changes."""
    if old is None:
        return new
    completed = max(old.completed, new.completed)
    done = max(old.completed + old.failed, new.completed + new.failed, completed)
    merged = Progress(
        completed=completed,
        failed=done - completed,
        in_progress=new.in_progress,
        total=max(old.total, new.total),
    )
    return None if merged == old else merged


def with_progress(record: JobRecord, progress: Progress) -> JobRecord | None:
    """``record`` with ``progress`` merged in (see `merge_progress`); None when nothing changes or the
    job ended. The one way progress is written, from the poll loop and from the flow alike."""
    merged = merge_progress(record.progress, progress)
    if merged is None or record.status.ended:
        return None
    record.progress = merged
    return record


def write_progress(job_id: str, progress: Progress) -> None:
    """Merge ``progress`` into the job's record and emit ``job.progress`` (blocking; run off the loop)."""
    store().jobs.update(
        job_id, lambda r: with_progress(r, progress), event="job.progress", data=progress.model_dump()
    )


async def _retrieve(ctx: PollContext, vector_store_id: str, batch_id: str) -> tuple[int, bytes, Any]:
    url = f"{ctx.base}/vector_stores/{vector_store_id}/file_batches/{batch_id}"
    reply = await ctx.http.get(url)
    return reply.status, reply.body, reply.headers


async def poll_batches(ctx: PollContext, claim: Claim) -> Outcome:
    """Retrieve the job's open batches, record progress, and poll again or hand the job to finish."""
    entry = claim.entry
    assert isinstance(entry, BatchPoll)
    late = past_deadline(claim.job_id, entry, cancel=CANCEL, finish=FINISH)
    if late is not None:
        return late
    open_ids = list(entry.open)
    try:
        answers = await asyncio.gather(*(_retrieve(ctx, entry.vector_store_id, b) for b in open_ids))
    except (TimeoutError, aiohttp.ClientError) as exc:
        error = {"code": "connection_error", "message": f"could not reach the API: {exc!r}"}
        return failed(ctx, claim.job_id, entry, error, retryable=True, finish=FINISH)
    done: dict[str, Any] = dict(entry.done)
    counts: dict[str, Any] = {}
    still_open: list[str] = []
    hint: float | None = None
    for batch_id, (status, raw, headers) in zip(open_ids, answers, strict=True):
        if status != 200:
            return http_error(ctx, claim.job_id, entry, status, raw, headers, finish=FINISH)
        body = orjson.loads(raw)
        hint = max(hint or 0.0, poll_after(headers) or 0.0) or None
        counts[batch_id] = body.get("file_counts") or {}
        if body.get("status") in OPEN:
            still_open.append(batch_id)
        else:
            done[batch_id] = {"status": body.get("status"), "file_counts": counts[batch_id]}
    every = [d["file_counts"] for d in done.values()] + [counts[b] for b in still_open]
    progress = batch_progress(every, entry.total, entry.base)
    seen = progress.model_dump()
    if seen != entry.seen:
        await asyncio.get_running_loop().run_in_executor(None, write_progress, claim.job_id, progress)
    if not still_open:
        return Handoff(FINISH, [claim.job_id, {"batches": done}])
    polls = entry.polls + 1
    delay = compute_delay(polls, ctx.policy, poll_after=hint)
    changed = dataclasses.replace(entry, open=still_open, done=done, polls=polls, errors=0, seen=seen)
    return Again(delay, changed)
