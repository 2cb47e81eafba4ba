"""Celery tasks of clean-up jobs: thin, like web views. The logic is in `tasks.cleanup_flow`."""

from __future__ import annotations

from celery import current_app, shared_task

from schemas.job import JobError
from schemas.requests import CleanupRequest, CleanupTarget
from tasks import cleanup_flow
from tasks.base import RETRIED, JobTask, services
from tasks.steps import Services
from worker import constants as c
from worker.client import Jobs

KIND = cleanup_flow.KIND


class CleanupTask(JobTask):
    """A clean-up job's task: a job it gives up on ends ``failed``."""

    def fail_job(self, svc: Services, job_id: str, error: JobError) -> None:
        """End the job the way cleanup_flow does."""
        cleanup_flow.fail(svc, job_id, error)


@shared_task(name=c.TASK_START.format(kind=KIND), base=CleanupTask)
def start(job_ids: list[str]) -> None:
    """Plan a clean-up job, or carry on deleting for it. A job may take a whole chunk, so each job of a
    message beyond the first goes on in a message of its own."""
    svc = services()
    first, *rest = job_ids
    for job_id in rest:
        svc.send(c.TASK_START.format(kind=KIND), [[job_id]])
    cleanup_flow.run(svc, first)


@shared_task(name=c.TASK_CANCEL.format(kind=KIND), base=CleanupTask)
def cancel(job_id: str, reason: str = "requested") -> None:
    """Stop a clean-up job where it is."""
    cleanup_flow.cancel(services(), job_id, reason)


@shared_task(name=c.TASK_REDRIVE.format(kind=KIND), base=CleanupTask)
def redrive(job_id: str) -> None:
    """Send on a job the watchdog found stopped."""
    cleanup_flow.redrive(services(), job_id)


@shared_task(name=c.TASK_SCHEDULED_CLEANUP, acks_late=True, autoretry_for=RETRIED, max_retries=5)
def scheduled(targets: list[str]) -> str:
    """Beat's sweep: submit a clean-up job of ``targets``, so the sweep is a job like any other; its id."""
    svc = services()
    request = CleanupRequest(targets=[CleanupTarget(t) for t in targets])
    return Jobs(svc.settings, svc.store, celery=current_app).submit(request).id
