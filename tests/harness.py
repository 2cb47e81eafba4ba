"""An in-process, deterministic harness for flows: a real Redis, the emulator over real HTTP with the real
``openai`` client, real Celery messages through the Redis broker, and no worker processes.

- `BurstWorker.drain` takes the messages waiting on the worker's queues (in the order a worker serves them)
  and runs each task in this process, the way arq's ``worker(burst=True)`` or dramatiq's stub worker do.
- The poll loop runs one step at a time (`worker.poller.PollSession.tick`): claim what is due, poll it,
  write every outcome.
- `Clock` moves time forward: ``time.time`` is offset, so the schedule, deadlines and the emulator's runs
  (which derive their status from the clock) all see the same later moment, without waiting for it.

`Harness.run` alternates the three until every job named has ended: a flow test takes milliseconds
and asserts exact outcomes. Tests that need what only processes show (a SIGKILL, a real time limit, beat)
keep real workers.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import Any

import pytest
from celery import Celery

from schemas.job import JobRecord, JobStatus
from tasks.index_poll import poll_batches
from tasks.run_poll import poll_run
from worker import metrics
from worker.client import Jobs
from worker.poller import Poller, PollSession
from worker.polls import BatchPoll, RunPoll
from worker.settings import Settings
from worker.store import JobNotFound, Store
from worker.watchdog import Watchdog, kombu_backlog


class Clock:
    """``time.time`` plus an offset that only grows: `advance` jumps ahead without waiting."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch):
        self.offset = 0.0
        self._real = time.time
        monkeypatch.setattr(time, "time", self.now)

    def now(self) -> float:
        """The harness's present (unix seconds)."""
        return self._real() + self.offset

    def advance(self, seconds: float) -> None:
        """Jump ``seconds`` ahead."""
        self.offset += max(seconds, 0.0)


@dataclass
class BurstWorker:
    """Runs the tasks waiting on the broker's queues in this process until none is left."""

    app: Celery
    queues: list[str]
    ran: list[str] = field(default_factory=list)
    """Every task name run, in order."""

    def drain(self, limit: int = 10_000) -> int:
        """Run waiting messages, the first non-empty queue first each time; how many ran."""
        count = 0
        with self.app.connection_for_read() as conn:
            channel = conn.default_channel
            while count < limit:
                queue = self._first_waiting(channel)
                message = channel.basic_get(queue=queue) if queue else None
                if message is None:
                    break
                args, kwargs, _embed = message.decode()
                name = message.headers["task"]
                message.ack()
                self.app.tasks[name].apply(args=args, kwargs=kwargs, task_id=message.headers["id"])
                self.ran.append(name)
                count += 1
        return count

    def _first_waiting(self, channel: Any) -> str | None:
        """The first of `queues` holding a message, in one round trip: asking each with ``basic_get`` costs
        one a priority level of each queue (16 here), at every step of a flow, most of them finding none."""
        keys = [channel._q_for_pri(q, pri) for q in self.queues for pri in channel.priority_steps]
        with channel.conn_or_acquire() as client, client.pipeline(transaction=False) as pipe:
            for key in keys:
                pipe.llen(key)
            lengths = pipe.execute()
        levels = len(channel.priority_steps)
        waiting = [q for i, q in enumerate(self.queues) if any(lengths[i * levels : (i + 1) * levels])]
        return waiting[0] if waiting else None


class Harness:
    """A producer client, a burst worker, the poll loop and a clock, on one test's Redis and emulator."""

    def __init__(self, settings: Settings, app: Celery, clock: Clock):
        self.settings = settings
        self.app = app
        self.clock = clock
        self.jobs = Jobs(settings, celery=app)
        self.store: Store = self.jobs.store
        self.worker = BurstWorker(
            app,
            [
                settings.queue_runs_active,
                settings.queue_runs,
                settings.queue_indexing,
                settings.queue_maintenance,
            ],
        )
        self.poller = Poller(
            settings,
            lambda name, args, task_id: app.send_task(name, args=args, task_id=task_id),
            handlers={RunPoll: poll_run, BatchPoll: poll_batches},
        )
        self.watchdog = Watchdog(self.store, settings, kombu_backlog(app.connection_for_write))
        self._loop = asyncio.new_event_loop()
        self._stack = ExitStack()
        self._session: PollSession | None = None

    def __enter__(self) -> Harness:
        session_cm = self.poller.session()
        self._session = self._loop.run_until_complete(session_cm.__aenter__())
        self._stack.callback(lambda: self._loop.run_until_complete(session_cm.__aexit__(None, None, None)))
        return self

    def __exit__(self, *exc: object) -> None:
        self._stack.close()
        self._loop.close()
        self.jobs.store.redis.close()

    def tick(self) -> int:
        """One step of the poll loop; how many entries it handled."""
        assert self._session is not None
        return self._loop.run_until_complete(self._session.tick())

    def step(self) -> int:
        """Run the waiting messages, then one poll step; how many things happened."""
        return self.worker.drain() + self.tick()

    def run(
        self, *job_ids: str, max_steps: int = 2_000, until: Callable[[], bool] | None = None
    ) -> list[JobRecord]:
        """Step, and move the clock to the next due entry whenever nothing is left to do now, until every
        job in ``job_ids`` has ended (or ``until()`` holds); their records. Fails when nothing is left to
        do and a job still has not ended: that job is stuck."""
        done = until or _all_ended(self.store, job_ids)
        for _ in range(max_steps):
            if done():
                return self.records(job_ids)
            if self.step():
                continue
            due_in = self.store.schedule.next_due_in()
            if due_in is None:
                stuck = {j: self.jobs.get(j).status.value for j in job_ids}
                raise AssertionError(
                    f"nothing is scheduled and nothing waits, yet jobs have not ended: {stuck}"
                )
            self.clock.advance(due_in + 0.001)
        raise AssertionError(f"jobs still running after {max_steps} steps")

    def records(self, job_ids: Sequence[str]) -> list[JobRecord]:
        """The records of ``job_ids``, read in one round trip; `JobNotFound` when one is gone."""
        found = self.store.jobs.get_many(job_ids)
        for job_id, record in zip(job_ids, found, strict=True):
            if record is None:
                raise JobNotFound(job_id)
        return [r for r in found if r is not None]

    def run_until_created(self, job_id: str) -> JobRecord:
        """Step until the job's remote run or response exists and its first poll is on the schedule."""
        self.run(
            until=lambda: bool(
                self.jobs.get(job_id).remote.get("response_id") or self.jobs.get(job_id).remote.get("run_id")
            )
        )
        self.step()
        return self.jobs.get(job_id)

    def submit_and_run(self, request: dict[str, Any]) -> JobRecord:
        """Submit one job and run it to its end."""
        ref = self.jobs.submit(request)
        return self.run(ref.id)[0]

    def run_until_status(self, job_id: str, status: JobStatus) -> JobRecord:
        """Step until the job is in ``status`` (failing if it can get there no more); its record."""
        self.run(job_id, until=lambda: self.jobs.get(job_id).status == status)
        return self.jobs.get(job_id)

    def events_of(self, job_id: str) -> list[str]:
        """The types of the job's events, oldest first."""
        return [e.type for e in self.jobs.events(count=10_000) if e.job_id == job_id]


def _all_ended(store: Store, job_ids: Sequence[str]) -> Callable[[], bool]:
    """A check that every job of ``job_ids`` has ended, reading only those not yet seen ended (an end
    state never changes) in one round trip: hundreds of jobs are checked at every step."""
    live = list(job_ids)

    def check() -> bool:
        nonlocal live
        records = store.jobs.get_many(live)
        for job_id, record in zip(live, records, strict=True):
            if record is None:
                raise JobNotFound(job_id)
        live = [r.id for r in records if r is not None and not r.status.ended]
        return not live

    return check


def reset_process_caches() -> None:
    """Forget the per-process settings, store, client and services, so this test's environment counts."""
    from tasks.base import services
    from worker.async_api import api_loop
    from worker.connections import store
    from worker.openai_client import openai_client, rate_gate
    from worker.settings import get_settings

    if api_loop.cache_info().currsize:
        api_loop().close()
    if openai_client.cache_info().currsize:
        openai_client().close()
    if rate_gate.cache_info().currsize:
        rate_gate().watch.close()
    if store.cache_info().currsize:
        store().redis.close()
    for cached in (get_settings, store, openai_client, rate_gate, api_loop, services):
        cached.cache_clear()
    # This process's API counts go to Redis from a daemon thread every two seconds, into the store of the
    # first test that counted (a process has one Redis in production): write what they hold now, and from
    # now on into this test's Redis.
    counts = metrics._COUNTS.get(os.getpid())
    if counts is not None:
        counts.flush()
        counts.counters = store().counters


@contextlib.contextmanager
def harness_for(settings: Settings, clock: Clock) -> Iterator[Harness]:
    """A running harness for ``settings``, which must be what ``get_settings()`` reads in this process
    (the tasks read them there)."""
    from worker.app import create_app

    reset_process_caches()
    app = create_app(settings)
    app.set_current()
    with Harness(settings, app, clock) as harness:
        yield harness
    app.close()
    reset_process_caches()  # writes this test's API counts now, not into a later test's emptied Redis
