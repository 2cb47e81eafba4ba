"""The Celery app and the composition root: ``celery -A worker.app worker`` starts a worker with its
poll loop inside.

JSON only, late acks, one queue per job kind, no Celery result backend (the job store is the
result); the broker's options (Redis or RabbitMQ, TLS, Sentinel) come from `worker.broker`.

This is the one module of `worker` that knows the job kinds of `tasks`: it imports their task modules
and hands the poll loop their handlers and the watchdog. Everything else in `worker` stands below
`tasks` (an import-linter contract in pyproject.toml says so).
"""

from __future__ import annotations

import logging
from typing import Any

import redis
from celery import Celery, bootsteps
from celery.signals import worker_init

import tasks.cleanup
import tasks.indexing
import tasks.runs
from tasks.assistants import quiet_assistants_deprecation
from tasks.index_poll import poll_batches
from tasks.run_poll import poll_run
from worker import poll_process
from worker.celery_config import APP_NAME, configure
from worker.connections import store
from worker.durability import DurabilityCheck
from worker.flower import install_task_display
from worker.metrics import flush_process, install_worker_hooks
from worker.openai_client import warm_imports
from worker.poller import Poller
from worker.polls import BatchPoll, RunPoll
from worker.preflight import ApiKeyCheck
from worker.settings import Settings, get_settings
from worker.watchdog import Watchdog, kombu_backlog

TASK_MODULES = [tasks.runs.__name__, tasks.indexing.__name__, tasks.cleanup.__name__]
"""The task modules, imported here (not found by Celery from the working directory), so a user's own
``tasks.py`` beside the worker can never shadow them."""


class PollerStep(bootsteps.StartStopStep):
    """Starts the poll loop with the worker, so one command starts everything: in a process of its own
    (`worker.poll_process`) or, with ``AJ_POLL_PROCESS=false``, in a thread of the main process."""

    # After the checks that may refuse the worker, so no poll loop is forked for one that never starts.
    requires = ("celery.worker.components:Pool", DurabilityCheck, ApiKeyCheck)

    def __init__(self, parent: Any, **kwargs: Any) -> None:
        super().__init__(parent, **kwargs)
        self.poller: Poller | None = None
        self.keeper: poll_process.Keeper | None = None

    def create(self, parent: Any) -> None:
        # Built, not started: the pool has forked nothing yet and no thread runs, so the poll loop's process
        # is forked here (see worker/poll_process.py) and let go at start.
        if get_settings().poll_process:
            self.keeper = poll_process.Keeper(run_poll_process, parent.hostname)
            self.keeper.prepare()

    def start(self, parent: Any) -> None:
        if self.keeper is not None:
            self.keeper.start()
        else:
            self.poller = build_poller(parent.app, parent.hostname)
            self.poller.start()

    def stop(self, parent: Any) -> None:
        if self.keeper is not None:
            self.keeper.stop()
        if self.poller is not None:
            self.poller.stop()


def build_poller(celery: Celery, name: str) -> Poller:
    """The poll loop of worker ``name``: the job kinds' handlers, the watchdog, sends through ``celery``."""
    settings = get_settings()
    watchdog = Watchdog(store(), settings, kombu_backlog(celery.connection_for_write))
    try:
        store().schedule.migrate()  # what an earlier release left in its one set, into the kinds' sets
    except redis.RedisError as exc:  # the next worker to start moves them; the watchdog covers meanwhile
        logging.getLogger(__name__).warning("could not move the old schedule's entries yet: %s", exc)

    def send(task: str, args: list[Any], task_id: str) -> None:
        celery.send_task(task, args=args, task_id=task_id)

    return Poller(
        settings,
        send,
        handlers={RunPoll: poll_run, BatchPoll: poll_batches},
        periodic=watchdog.run,
        name=name,
    )


def run_poll_process(parent: poll_process.Parent, name: str) -> None:
    """The poll loop's own process (`PollerStep` starts it): the loop until the worker stops or is gone."""
    stopping = poll_process.stop_event(parent)
    poller = build_poller(app, name)
    logging.getLogger(__name__).info(
        "poll loop of %s running, claiming the %s schedule", name, ", ".join(poller.settings.poll_kinds)
    )
    parent.running.set()
    poller.run(stopping)
    flush_process()


QUIET_LOGGERS = ("httpx2", "httpx")
"""HTTP clients that log every request at INFO: one line per API call is noise in a worker's log and
costs CPU at thousands of calls a minute. Their warnings and errors still show."""


def create_app(settings: Settings | None = None) -> Celery:
    """The Celery app for ``settings`` (read from the environment when None)."""
    settings = settings or get_settings()
    celery = Celery(APP_NAME, include=[*TASK_MODULES, *settings.tool_modules])
    configure(celery, settings)
    celery.steps["worker"].add(PollerStep)
    celery.steps["worker"].add(DurabilityCheck)  # warns, or refuses, on a Redis that can lose jobs
    celery.steps["worker"].add(ApiKeyCheck)  # refuses to start without an API key
    install_worker_hooks()
    install_task_display()
    quiet_assistants_deprecation()
    # In the worker's main process, before the pool forks: every pool process inherits the SDK's modules.
    worker_init.connect(lambda **_: warm_imports(), weak=False)
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
    return celery


app = create_app()
