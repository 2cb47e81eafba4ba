"""Celery tasks of indexing jobs: thin, like web views. The logic is in `tasks.index_flow`."""

from __future__ import annotations

from typing import Any

from celery import shared_task

import tasks.index_poll  # noqa: F401  (registers the file-batch poll handler in the worker's poll loop)
from tasks import index_flow
from tasks.base import JobTask, services
from worker import constants as c

KIND = "index"


@shared_task(name=c.TASK_START.format(kind=KIND), base=JobTask)
def start(job_ids: list[str]) -> None:
    """Check the jobs' paths and send each on to its prepare step (a list, so `submit_many` sends few)."""
    svc = services()
    for job_id in job_ids:
        index_flow.start(svc, job_id)


@shared_task(name=c.TASK_PREPARE.format(kind=KIND), base=JobTask)
def prepare(job_id: str) -> None:
    """Create the store, upload a chunk of files or create the batches; re-sent until all is done."""
    index_flow.prepare(services(), job_id)


@shared_task(name=c.TASK_FINISH.format(kind=KIND), base=JobTask)
def finish(job_id: str, body: dict[str, Any]) -> None:
    """Act on a poll that saw every batch of a round end: retry failed files or write the result."""
    index_flow.finish(services(), job_id, body)


@shared_task(name=c.TASK_CANCEL.format(kind=KIND), base=JobTask)
def cancel(job_id: str, reason: str = "requested") -> None:
    """Cancel a job's open batches (on request, or past its deadline) and end it."""
    index_flow.cancel(services(), job_id, reason)
