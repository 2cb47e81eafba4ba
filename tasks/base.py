"""What every task shares: the base class and the per-process services the flows run on.

The base class carries the cross-cutting rules once, so task bodies stay thin:

- late acks and a redelivery when the worker dies: every task is idempotent and picks up where it stopped;
- a short retry on a Redis blip or a soft time limit;
- when the task is done with a message, each job it carried either has its next entry on the schedule or
  is no longer waiting on this message (`after_return` clears the parked entry, see `worker.dispatch`);
- a task that gives up (an unexpected error, or its retries spent) ends its jobs ``failed`` with the error
  and dead-letters them, through the kind's own ``fail`` (which, for runs, also frees the thread): a job
  never stays stuck because a task raised.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Iterable
from typing import Any

import redis
from celery import Task, current_app, states
from celery.exceptions import SoftTimeLimitExceeded

from schemas.job import JobError
from tasks.steps import Services, internal_error
from tasks.tools import Tools
from worker.async_api import api_loop
from worker.connections import store
from worker.dispatch import Dispatcher, job_ids_of
from worker.flower import describe_ends
from worker.openai_client import openai_client
from worker.settings import get_settings

log = logging.getLogger(__name__)

Fail = Callable[[Services, str, JobError], None]
"""Ends one job ``failed`` with an error (dead-lettered), the way its kind ends jobs."""

RETRIED = (redis.ConnectionError, redis.TimeoutError, SoftTimeLimitExceeded)
"""Errors worth a short retry of the whole task: a Redis blip, or a slow API cutting a task off."""


class JobTask(Task):  # type: ignore[type-arg,misc]
    """Base for every job task: idempotent, so acked late and given back if the worker dies."""

    acks_late = True
    reject_on_worker_lost = True
    # Countdowns stay far below the visibility timeout, so a retry is never delivered twice.
    autoretry_for = RETRIED
    retry_backoff = 1
    retry_backoff_max = 10
    max_retries = 10

    def fail_job(self, svc: Services, job_id: str, error: JobError) -> None:
        """End one job this task gave up on, the way its kind ends jobs (kinds override this)."""

    def __call__(self, *args: Any, **kwargs: Any) -> str | None:
        """Run the task; its result is where its jobs are now (``job_x -> failed (not_found)``), which
        Flower shows. A failure to read that never fails the task: the step has been done."""
        super().__call__(*args, **kwargs)
        try:
            return describe_ends(store().jobs.ends(job_ids_of(args)))
        except Exception:
            log.debug("could not read the ends of task %s's jobs", self.name, exc_info=True)
            return None

    def after_return(
        self, status: str, retval: Any, task_id: str, args: Any, kwargs: Any, einfo: Any
    ) -> None:
        """The message is done with: clear the parked entry of each job it carried that no step moved on.
        Not after a retry, whose new message carries the jobs on (under the same task id)."""
        if status == states.RETRY:
            return
        try:
            store().schedule.clear_sent(job_ids_of(args or []), task_id)
        except redis.RedisError:
            log.warning("could not clear the schedule after task %s; the watchdog will look", task_id)

    def on_failure(self, exc: BaseException, task_id: str, args: Any, kwargs: Any, einfo: Any) -> None:
        """The task gave up: end its jobs ``failed`` (dead-lettered), unless Redis itself is away, in which
        case nothing can be written and the watchdog re-drives them once it is back."""
        if isinstance(exc, redis.RedisError) or retried_cause(exc):
            return
        svc = services()
        for job_id in job_ids_of(args or []):
            fail_quietly(svc, job_id, internal_error(exc, f"task {self.name}"), self.fail_job)


def fail_quietly(svc: Services, job_id: str, error: JobError, fail: Fail) -> None:
    """End one job with ``error``, logging rather than raising if even that fails."""
    try:
        fail(svc, job_id, error)
    except Exception:
        log.exception("could not end job %s after its task failed", job_id)


def each_job(svc: Services, job_ids: Iterable[str], step: Callable[[str], None], fail: Fail) -> None:
    """Run ``step`` for each job of a multi-job message. A Redis blip or a soft time limit retries the
    whole message (every step is idempotent); any other error is that job's alone: it ends ``failed``
    and the others carry on."""
    for job_id in job_ids:
        try:
            step(job_id)
        except RETRIED:
            raise
        except Exception as exc:
            if retried_cause(exc):
                raise
            log.exception("job %s failed in its step", job_id)
            fail_quietly(svc, job_id, internal_error(exc, "its step"), fail)


def retried_cause(exc: BaseException) -> bool:
    """Whether a `RETRIED` error is behind ``exc``: then the whole message is retried, not the job failed.

    A soft time limit strikes wherever the task happens to be, and library code may wrap it: an import
    reports it as a RuntimeError caused by it, and pydantic-core, building a validator, as a SchemaError
    that only names it in its text. Both are looked for."""
    seen: set[int] = set()
    cause: BaseException | None = exc
    while cause is not None and id(cause) not in seen:
        if isinstance(cause, RETRIED) or SoftTimeLimitExceeded.__name__ in str(cause):
            return True
        seen.add(id(cause))
        cause = cause.__cause__ or cause.__context__
    return False


def publish(name: str, args: list[Any], task_id: str) -> None:
    """Publish a task by name on its kind's queue, under a task id chosen by the caller."""
    current_app.send_task(name, args=args, task_id=task_id)


@functools.cache
def services() -> Services:
    """This process's services."""
    settings = get_settings()
    st = store()
    return Services(
        settings=settings,
        store=st,
        client=openai_client(),
        api=api_loop(),
        dispatcher=Dispatcher(st.schedule, publish, settings.outbox_grace),
        tools=Tools.from_modules(settings.tool_modules),
    )
