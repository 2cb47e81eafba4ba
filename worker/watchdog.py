"""The watchdog: finds jobs that stopped moving and sends them on.

Every live job is owned by something that will move it: an entry on the poll schedule (a poll, a
deferred step, a start in the outbox), a Celery message in flight (its entry parked with the message's
task id, see `worker.store.schedule`), or its thread's queue (it waits for the job ahead, which is itself
owned). A job loses its owner only when something was lost: Redis restarted without the last writes, a
broker message vanished, a bug. A pass, run every `Settings.watchdog_every` seconds by one worker's poll
loop at a time, looks for

- *ownerless* jobs: live for `Settings.ownerless_after` in their status with no schedule entry, and not
  waiting behind a live holder on a thread (or waiting there past their own deadline);
- *lost messages*: entries parked longer than `Settings.stall_after` while the broker holds nothing for
  the job's queues. A message waiting its turn behind a burst is never judged: its queue is not empty.

and hands each to its kind's re-drive task (``aj.{kind}.redrive``) through the schedule. That task
decides what the job needs (poll its run again, start it again: every step is idempotent), counts the
re-drive on the record with a ``job.redriven`` event, and past `Settings.max_redrives` ends the job
``failed`` with code ``stalled``, dead-lettered.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from schemas.job import JobKind, JobRecord, JobStatus
from worker import constants as c
from worker.polls import TaskDue
from worker.settings import Settings
from worker.store import Store
from worker.store.schedule import now_ms

log = logging.getLogger(__name__)

Backlog = Callable[[str], int]
"""Messages waiting in the broker for a queue (raises when the broker cannot say)."""


@dataclass
class Pass:
    """What one watchdog pass found and did."""

    ran: bool = False
    """False when another worker held the watchdog's lease."""
    ownerless: list[str] = field(default_factory=list)
    lost: list[str] = field(default_factory=list)
    redriven: list[str] = field(default_factory=list)


def queues_of(settings: Settings) -> dict[JobKind, list[str]]:
    """The queues each job kind's messages travel on."""
    return {
        JobKind.RUN: [settings.queue_runs_active, settings.queue_runs],
        JobKind.INDEX: [settings.queue_indexing],
        JobKind.CLEANUP: [settings.queue_maintenance],
    }


class Watchdog:
    """One pass at a time (`run`) over the store, re-driving what stopped."""

    def __init__(self, store: Store, settings: Settings, backlog: Backlog):
        self.store = store
        self.settings = settings
        self.backlog = backlog
        self.queues = queues_of(settings)

    def run(self) -> Pass:
        """One pass, if no other worker runs one now."""
        with self.store.leases.watchdog(self.settings.watchdog_every) as mine:
            if not mine:
                return Pass()
            found = Pass(ran=True)
            self._ownerless(found)
            self._lost(found)
        if found.redriven:
            log.warning(
                "watchdog: re-driving %d stalled job(s) (%d without an owner, %d whose message was lost): %s",
                len(found.redriven),
                len(found.ownerless),
                len(found.lost),
                ", ".join(found.redriven[:20]),
            )
        return found

    # --- jobs with no owner -----------------------------------------------------------------------
    def _ownerless(self, found: Pass) -> None:
        live = self.store.jobs.live_since(time.time() - self.settings.ownerless_after)
        ids = list(live)
        candidates = [j for j, has in zip(ids, self.store.schedule.scheduled(ids), strict=True) if not has]
        if not candidates:
            return
        records = self.store.jobs.get_many(candidates)
        for job_id, record in zip(candidates, records, strict=True):
            if record is None or record.status.ended or self._waits_its_turn(record):
                continue
            found.ownerless.append(job_id)
            if self._redrive(record.kind, job_id, waited_on=None):
                found.redriven.append(job_id)

    def _waits_its_turn(self, record: JobRecord) -> bool:
        """Whether a queued job sits in its thread's queue behind another live job (which owns the turn).
        Not once its own deadline has passed: then it is re-driven, and its start ends it ``timed_out``."""
        if record.status != JobStatus.QUEUED or (record.deadline_at and time.time() > record.deadline_at):
            return False
        thread = record.request.get("thread_id") or record.request.get("conversation_id")
        if not thread:
            return False
        line = self.store.threads.waiting(str(thread))
        if not line or record.id not in line[1:]:
            return False
        holder = self.store.jobs.get(line[0])
        return holder is not None and not holder.status.ended and holder.id != record.id

    # --- messages lost on the way -----------------------------------------------------------------------
    def _lost(self, found: Pass) -> None:
        parked = self.store.schedule.parked_before(now_ms() - int(self.settings.stall_after * 1000))
        if not parked:
            return
        kinds = self._kinds([job_id for job_id, _, _ in parked])
        idle = self._idle_kinds(set(kinds.values()))
        for job_id, _at, task_id in parked:
            kind = kinds.get(job_id)
            if kind is None or kind not in idle:
                continue  # gone (the jobs sweep drops it), or its queues still hold messages
            found.lost.append(job_id)
            if self._redrive(kind, job_id, waited_on=task_id or ""):
                found.redriven.append(job_id)

    def _kinds(self, job_ids: Sequence[str]) -> dict[str, JobKind]:
        records = self.store.jobs.get_many(job_ids)
        return {r.id: r.kind for r in records if r is not None and not r.status.ended}

    def _idle_kinds(self, kinds: set[JobKind]) -> set[JobKind]:
        """The kinds whose every queue is empty now (a broker that cannot say counts as busy)."""
        idle = set()
        for kind in kinds:
            try:
                if all(self.backlog(queue) == 0 for queue in self.queues[kind]):
                    idle.add(kind)
            except Exception as exc:
                log.warning("watchdog: the broker did not say how many %s messages wait: %s", kind.value, exc)
        return idle

    def _redrive(self, kind: JobKind, job_id: str, *, waited_on: str | None) -> bool:
        entry = TaskDue(c.TASK_REDRIVE.format(kind=kind.value), [job_id])
        return self.store.schedule.redrive(job_id, entry, waited_on=waited_on)


def kombu_backlog(connection_for: Callable[[], object]) -> Backlog:
    """A `Backlog` reading queue lengths through kombu (Redis and RabbitMQ alike): a passive declare says
    how many messages wait; kombu's Redis transport says "not found" for an empty queue."""
    from kombu.exceptions import ChannelError  # kombu is Celery's; imported here to keep this module light

    def backlog(queue: str) -> int:
        with connection_for() as conn:  # type: ignore[attr-defined]
            try:
                _name, count, _consumers = conn.default_channel.queue_declare(queue=queue, passive=True)
            except ChannelError:
                return 0
            return int(count)

    return backlog
