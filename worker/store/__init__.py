"""The store layer: the only code that knows a Redis key of this system or runs a script on one.

Each module owns one family of keys (named in `worker.store.keys`): job records, indexes, events, waits,
idempotency and dead letters (`jobs`); the poll schedule and outbox (`schedule`); thread holders and queues
(`threads`); step leases (`leases`); indexing uploads (`uploads`); the clean-up inventory (`inventory`);
clean-up work lists and pace (`cleanup`); the shared Retry-After (`gates`); API request counts
(`counters`); webhook wake-ups (`wakeups`). Producers, tasks and the poll loop ask these owners; `Store`
bundles them on one client.
"""

from __future__ import annotations

from dataclasses import dataclass

from redis import Redis

from worker.store import census
from worker.store.cleanup import CleanupQueue, Pace
from worker.store.counters import ApiCounters
from worker.store.gates import Gates
from worker.store.inventory import Inventory
from worker.store.jobs import JobNotFound, JobStore, NewJob, new_job_id
from worker.store.leases import Leases
from worker.store.schedule import Schedule
from worker.store.threads import ThreadLocks
from worker.store.uploads import Uploads
from worker.store.wakeups import Wakeups

__all__ = ["JobNotFound", "NewJob", "Store", "new_job_id"]


@dataclass
class Store:
    """Every owner of keys, on one Redis client."""

    redis: Redis
    jobs: JobStore
    schedule: Schedule
    threads: ThreadLocks
    leases: Leases
    uploads: Uploads
    inventory: Inventory
    cleanup: CleanupQueue
    gates: Gates
    counters: ApiCounters
    wakeups: Wakeups

    def pace(self, per_s: float) -> Pace:
        """The delete rate every clean-up on every host shares, at ``per_s`` deletes a second."""
        return Pace(self.redis, per_s)

    def pending_files(self) -> set[str]:
        """File ids that jobs not yet ended refer to: in their requests, or uploaded for them so far."""
        live = list(self.jobs.live_since(float("inf")))
        referenced = self.uploads.file_ids(live)
        for record in self.jobs.get_many(live):
            if record is not None:
                referenced.update(str(f) for f in record.request.get("file_ids", []))
        return referenced

    def census(self) -> census.Census:
        """The figures the metrics exporter serves, read in one round trip."""
        return census.take(self.redis)

    @classmethod
    def on(cls, client: Redis, *, result_ttl: int, idempotency_ttl: int, events_maxlen: int) -> Store:
        """The store on ``client``; ``result_ttl`` bounds what ended jobs leave behind."""
        return cls(
            redis=client,
            jobs=JobStore(
                client, result_ttl=result_ttl, idempotency_ttl=idempotency_ttl, events_maxlen=events_maxlen
            ),
            schedule=Schedule(client),
            threads=ThreadLocks(client),
            leases=Leases(client),
            uploads=Uploads(client, result_ttl),
            inventory=Inventory(client),
            cleanup=CleanupQueue(client),
            gates=Gates(client),
            counters=ApiCounters(client),
            wakeups=Wakeups(client),
        )
