"""Celery tasks of clean-up jobs."""

from __future__ import annotations

from celery import shared_task

from tasks import cleanup_flow
from tasks.base import JobTask, services
from worker import constants as c

KIND = "cleanup"


@shared_task(name=c.TASK_START.format(kind=KIND), base=JobTask)
def start(job_ids: list[str]) -> None:
    """Run clean-up jobs."""
    svc = services()
    for job_id in job_ids:
        cleanup_flow.run(svc, job_id)


@shared_task(name=c.TASK_CANCEL.format(kind=KIND), base=JobTask)
def cancel(job_id: str, reason: str = "requested") -> None:
    """A clean-up runs in one task; a cancel that arrives while it is queued already ended it."""
