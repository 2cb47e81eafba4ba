"""Celery tasks of indexing jobs: thin, like web views. The logic is in `tasks.index_flow`."""

from __future__ import annotations

from typing import Any

from celery import shared_task

from schemas.job import JobError
from tasks import index_finish, index_flow, index_prepare
from tasks.base import JobTask, each_job, services
from tasks.steps import Services
from worker import constants as c

KIND = "index"


class IndexTask(JobTask):
    """An indexing job's task: a job it gives up on ends ``failed``."""

    def fail_job(self, svc: Services, job_id: str, error: JobError) -> None:
        """End the job the way index_flow does."""
        index_flow.fail(svc, job_id, error)


@shared_task(name=c.TASK_START.format(kind=KIND), base=IndexTask)
def start(job_ids: list[str]) -> None:
    """Check the jobs' paths and send each on to its prepare step (a list, so `submit_many` sends few)."""
    svc = services()
    each_job(svc, job_ids, lambda j: index_flow.start(svc, j), index_flow.fail)


@shared_task(name=c.TASK_PREPARE.format(kind=KIND), base=IndexTask)
def prepare(job_id: str) -> None:
    """Create the store, upload a chunk of files or create the batches; re-sent until all is done."""
    index_prepare.prepare(services(), job_id)


@shared_task(name=c.TASK_FINISH.format(kind=KIND), base=IndexTask)
def finish(job_id: str, body: dict[str, Any]) -> None:
    """Act on a poll that saw every batch of a round end: retry failed files or write the result."""
    index_finish.finish(services(), job_id, body)


@shared_task(name=c.TASK_CANCEL.format(kind=KIND), base=IndexTask)
def cancel(job_id: str, reason: str = "requested") -> None:
    """Cancel a job's open batches (on request, or past its deadline) and end it."""
    index_flow.cancel(services(), job_id, reason)


@shared_task(name=c.TASK_REDRIVE.format(kind=KIND), base=IndexTask)
def redrive(job_id: str) -> None:
    """Send on a job the watchdog found stopped."""
    index_flow.redrive(services(), job_id)
