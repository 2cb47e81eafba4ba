"""Clean-up jobs. This first version sweeps the job store: index entries and dead letters of
records past retention. The remote sweeps (threads, conversations, stores, files) come with the
inventory."""

from __future__ import annotations

from typing import Any

from schemas.job import JobStatus
from schemas.requests import CleanupRequest, CleanupTarget
from tasks.run_flow import Services
from worker import constants as c


def run(svc: Services, job_id: str) -> None:
    """Run one clean-up job to its end state."""
    record = svc.store.get(job_id)
    if record is None or record.status.ended:
        return
    request = CleanupRequest.model_validate(record.request)
    svc.store.set_status(job_id, JobStatus.RUNNING)
    result: dict[str, Any] = {"dry_run": request.dry_run}
    if CleanupTarget.JOBS in request.targets:
        result["jobs"] = sweep_job_index(svc, dry_run=request.dry_run)
    svc.store.set_status(job_id, JobStatus.COMPLETED, result=result)


def sweep_job_index(svc: Services, *, dry_run: bool) -> dict[str, int]:
    """Drop index and dead-letter entries whose record expired; counts what was (or would be) deleted."""
    r = svc.store.redis
    deleted = 0
    keys = [c.STATUS_INDEX_KEY.format(status=s.value) for s in JobStatus] + [c.DEAD_LETTER_KEY]
    for key in keys:
        members = [m.decode() for m in r.zrange(key, 0, -1)]
        pipe = r.pipeline(transaction=False)
        for job_id in members:
            pipe.exists(c.JOB_KEY.format(id=job_id))
        gone = [m for m, exists in zip(members, pipe.execute(), strict=True) if not exists]
        deleted += len(gone)
        if gone and not dry_run:
            r.zrem(key, *gone)
    return {"deleted": deleted, "skipped": 0, "failed": 0}
