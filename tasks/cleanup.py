"""Celery tasks of clean-up jobs: thin, like web views. The logic is in `tasks.cleanup_flow`."""

from __future__ import annotations

from celery import current_app, shared_task

from schemas.requests import CleanupRequest, CleanupTarget
from tasks import cleanup_flow
from tasks.base import JobTask, services
from worker import constants as c
from worker.client import Jobs

KIND = cleanup_flow.KIND


@shared_task(name=c.TASK_START.format(kind=KIND), base=JobTask)
def start(job_ids: list[str]) -> None:
    """Plan a clean-up job, or carry on deleting for it; each job gets a task of its own."""
    svc = services()
    first, rest = cleanup_flow.first_and_rest(job_ids)
    for job_id in rest:
        svc.send(c.TASK_START.format(kind=KIND), [[job_id]])
    cleanup_flow.run(svc, first)


@shared_task(name=c.TASK_CANCEL.format(kind=KIND), base=JobTask)
def cancel(job_id: str, reason: str = "requested") -> None:
    """Stop a clean-up job where it is."""
    cleanup_flow.cancel(services(), job_id)


@shared_task(name=c.TASK_SCHEDULED_CLEANUP, base=JobTask)
def scheduled(targets: list[str]) -> str:
    """Beat's sweep: submit a clean-up job of ``targets``, so the sweep is a job like any other; its id."""
    svc = services()
    request = CleanupRequest(targets=[CleanupTarget(t) for t in targets])
    return Jobs(svc.settings, svc.store, celery=current_app).submit(request).id
