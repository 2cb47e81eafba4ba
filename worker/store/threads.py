"""One active run per thread (or conversation): a holder key and a FIFO queue per thread.

A job acquires the thread before it creates a run there and releases it when it ends; the release hands
the thread to the next live job in the queue and puts that job's start in the outbox in the same step. A
holder or queue head whose job has ended or vanished (its worker died between the end and the release) is
passed over. A job joins its thread's queue when it is submitted (`worker.store.jobs.JobStore.submit`),
which fixes the order jobs on one thread run in.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

import redis

from worker.polls import TaskDue, kind_of
from worker.store import keys
from worker.store.codec import text
from worker.store.schedule import now_ms, schedule_keys
from worker.store.scripts import LIVE_STATUSES, source

HOLD_TTL_S = 2 * 86_400
"""Bound of the holder and queue keys: past the longest deadline a job may have (one day for runs), so a
thread whose holder vanished without a release frees itself."""

LIVE_INDEXES = [keys.STATUS_INDEX.format(status=s.value) for s in LIVE_STATUSES]


class Turn(StrEnum):
    """The answer to a request for a thread."""

    ACQUIRED = "acquired"
    """The job holds the thread now and may create its run."""
    WAITING = "waiting"
    """Another job holds (or is ahead for) the thread; this one starts when released to it."""
    BUSY = "busy"
    """Strategy `reject` and the thread is held."""


@dataclass(frozen=True)
class Acquisition:
    """What `ThreadLocks.acquire` decided, and which job holds or heads the thread."""

    turn: Turn
    other: str


@dataclass(frozen=True)
class Handover:
    """The job a release handed the thread to, and its start staged in the outbox."""

    job_id: str
    token: int
    """The outbox entry's score: `Schedule.park` needs it once the start is sent."""


def queue_key(thread: str) -> str:
    """The key of ``thread``'s queue (for `worker.store.jobs`, which joins jobs to it at submit)."""
    return keys.THREAD_QUEUE.format(thread=thread)


class ThreadLocks:
    """The per-thread holder and queue."""

    def __init__(self, client: redis.Redis):
        self.redis = client
        self._acquire = client.register_script(source("thread_acquire"))
        self._release = client.register_script(source("thread_release"))

    @staticmethod
    def _keys(thread: str) -> list[str]:
        return [keys.THREAD_HOLDER.format(thread=thread), queue_key(thread)]

    def acquire(self, thread: str, job_id: str, mode: str) -> Acquisition:
        """Take ``thread`` for ``job_id`` if it is free and the job is first in line."""
        return self.acquire_many([(thread, job_id)], mode)[0]

    def acquire_many(self, pairs: Sequence[tuple[str, str]], mode: str) -> list[Acquisition]:
        """`acquire` for many ``(thread, job id)`` in one round trip."""
        pipe = self.redis.pipeline(transaction=False)
        for thread, job_id in pairs:
            self._acquire(
                keys=[*self._keys(thread), *LIVE_INDEXES], args=[job_id, mode, HOLD_TTL_S], client=pipe
            )
        return [Acquisition(Turn(text(turn)), text(other)) for turn, other in pipe.execute()]

    def release(
        self, thread: str, job_id: str, start: TaskDue, task_id: str, grace_s: float
    ) -> Handover | None:
        """Let go of ``thread`` (or leave its queue). The next live job in line holds it now and its start
        (``start.task``) is staged in the outbox as carried by message ``task_id``; None when nobody waits."""
        due = now_ms() + int(grace_s * 1000)
        nxt = self._release(
            keys=[*self._keys(thread), *schedule_keys(kind_of(start)), *LIVE_INDEXES],
            args=[job_id, start.task, due, task_id, HOLD_TTL_S],
        )
        return Handover(text(nxt), due) if nxt else None

    def waiting(self, thread: str) -> list[str]:
        """The holder (first) and the jobs queued for ``thread``."""
        pipe = self.redis.pipeline(transaction=False)
        pipe.get(keys.THREAD_HOLDER.format(thread=thread))
        pipe.lrange(queue_key(thread), 0, -1)
        holder, queued = pipe.execute()
        return [text(j) for j in ([holder] if holder else []) + list(queued)]

    def busy(self, threads: list[str]) -> set[str]:
        """Those of ``threads`` whose holder or queue has a live job."""
        pipe = self.redis.pipeline(transaction=False)
        for thread in threads:
            pipe.get(keys.THREAD_HOLDER.format(thread=thread))
            pipe.lrange(queue_key(thread), 0, -1)
        replies = pipe.execute()
        waiting: dict[str, list[str]] = {}
        for index, thread in enumerate(threads):
            holder, queued = replies[2 * index], replies[2 * index + 1]
            waiting[thread] = [text(j) for j in ([holder] if holder else []) + list(queued)]
        job_ids = sorted({j for js in waiting.values() for j in js})
        pipe = self.redis.pipeline(transaction=False)
        for job_id in job_ids:
            for index_key in LIVE_INDEXES:
                pipe.zscore(index_key, job_id)
        scores = pipe.execute()
        n = len(LIVE_INDEXES)
        live = {j for i, j in enumerate(job_ids) if any(s is not None for s in scores[i * n : (i + 1) * n])}
        return {thread for thread, js in waiting.items() if live.intersection(js)}
