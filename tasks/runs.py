"""Celery tasks of run jobs: thin, like web views. The logic is in `tasks.run_start`, `tasks.run_finish`
and `tasks.run_flow`."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from celery import shared_task

from schemas.job import JobError
from tasks import run_finish, run_flow, run_start
from tasks.base import JobTask, each_job, services
from tasks.steps import Services
from worker import constants as c

KIND = "run"


class RunTask(JobTask):
    """A run job's task: a job it gives up on ends ``failed`` and frees its thread."""

    def fail_job(self, svc: Services, job_id: str, error: JobError) -> None:
        """End the job the way run_flow does."""
        run_flow.fail(svc, job_id, error)


@shared_task(name=c.TASK_START.format(kind=KIND), base=RunTask)
def start(job_ids: list[str]) -> None:
    """Start run jobs (a list, so `submit_many` sends few messages), in groups of
    `Settings.start_concurrency` started at once. Past `START_SLICE_S` the rest goes on in a new message,
    behind any finishes waiting on `runs.active`: a burst of starts never keeps a
    pool process from learning of an end for long, and a slow API never cuts a chunk off half-way."""
    svc = services()
    until = time.monotonic() + min(c.START_SLICE_S, svc.settings.task_soft_time_limit * 0.5)
    size = svc.settings.start_concurrency
    for index in range(0, len(job_ids), size):
        if index and time.monotonic() > until:
            svc.send(c.TASK_START.format(kind=KIND), [job_ids[index:]])
            return
        run_start.start_many(svc, job_ids[index : index + size], lambda j, step: guard(svc, j, step))


def guard(svc: Services, job_id: str, step: Callable[[], None]) -> None:
    """Run one job's step of a group; an unexpected error ends that job alone (see `each_job`)."""
    each_job(svc, [job_id], lambda _: step(), run_flow.fail)


@shared_task(name=c.TASK_FINISH.format(kind=KIND), base=RunTask)
def finish(job_id: str, body: dict[str, Any]) -> None:
    """Act on a poll that saw the run end or ask for tool outputs (or a deferred retry of that)."""
    run_finish.advance(services(), job_id, body)


@shared_task(name=c.TASK_FINISH_MANY.format(kind=KIND), base=RunTask)
def finish_many(items: list[tuple[str, dict[str, Any]]]) -> None:
    """`finish` for several jobs as one group (`run_finish.advance_many`). A Redis hiccup retries the whole
    batch, which is safe: a job already finished is left as it is. Any other error is one job's: it ends
    failed and the others still finish."""
    svc = services()
    run_finish.advance_many(svc, dict(items), lambda j, step: guard(svc, j, step))


@shared_task(name=c.TASK_TOOL_OUTPUTS.format(kind=KIND), base=RunTask)
def tool_outputs(job_id: str, outputs: list[dict[str, str]]) -> None:
    """Send tool outputs a producer gave (already checked against the pending calls)."""
    run_finish.send_outputs(services(), job_id, outputs)


@shared_task(name=c.TASK_CANCEL.format(kind=KIND), base=RunTask)
def cancel(job_id: str, reason: str = "requested") -> None:
    """Cancel a job's remote run (on request, to interrupt, or past its deadline)."""
    run_flow.cancel(services(), job_id, reason)


@shared_task(name=c.TASK_REQUEUE.format(kind=KIND), base=RunTask)
def requeue(job_id: str, stuck: str | None = None) -> None:
    """Create again a background response (``stuck``) that stayed queued too long."""
    run_start.requeue(services(), job_id, stuck)


@shared_task(name=c.TASK_REDRIVE.format(kind=KIND), base=RunTask)
def redrive(job_id: str) -> None:
    """Send on a job the watchdog found stopped."""
    run_flow.redrive(services(), job_id)
