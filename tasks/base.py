"""What every task shares: the base class (late acks, retry on broker/store hiccups) and the
per-process services the flows run on."""

from __future__ import annotations

import functools
from typing import Any

import redis
from celery import Task, current_app
from celery.exceptions import SoftTimeLimitExceeded

from tasks.steps import Services
from tasks.threads import ThreadLocks
from worker.connections import store
from worker.openai_client import openai_client
from worker.scheduler import Schedule
from worker.settings import get_settings


class JobTask(Task):  # type: ignore[type-arg,misc]
    """Base for every job task: idempotent, so acked late and given back if the worker dies."""

    acks_late = True
    reject_on_worker_lost = True
    # A Redis blip, or a task cut off by its soft time limit (a slow API, a loaded host), is worth a
    # short retry: every task picks up where it stopped. Countdowns stay far below the visibility timeout.
    autoretry_for = (redis.ConnectionError, redis.TimeoutError, SoftTimeLimitExceeded)
    retry_backoff = 1
    retry_backoff_max = 10
    max_retries = 5


def send(name: str, args: list[Any]) -> None:
    """Dispatch a task by name on its kind's queue."""
    current_app.send_task(name, args=args)


@functools.cache
def services() -> Services:
    """This process's services."""
    st = store()
    return Services(
        settings=get_settings(),
        store=st,
        schedule=Schedule(st.redis),
        locks=ThreadLocks(st.redis),
        client=openai_client(),
        send=send,
    )
