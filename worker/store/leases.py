"""Step leases: the one task that may do a job's creating step now (a run's create, an indexing job's
uploads and batches, a clean-up's deletes), so a duplicate message never does it twice at once.

A lease is redis-py's `Lock` with an owner token and a TTL of the hard time limit, and a holder only ever
releases its own. On Redis as the broker a killed holder's lease is gone before its message is redelivered
(the visibility timeout is longer); RabbitMQ redelivers at once, so a step that finds the lease held comes
back when it lapses (`remaining`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import redis
from redis.exceptions import LockError

from worker.store import keys


class Leases:
    """Per-job step leases."""

    def __init__(self, client: redis.Redis):
        self.redis = client

    def hold(self, job_id: str, ttl_s: float) -> contextlib.AbstractContextManager[bool]:
        """Hold the job's lease (True) or learn that another task holds it (False), without waiting."""
        return self._hold(keys.LEASE.format(job_id=job_id), ttl_s)

    def remaining(self, job_id: str) -> float:
        """Seconds until the job's lease lapses (0 when nobody holds it)."""
        return max(0, int(self.redis.pttl(keys.LEASE.format(job_id=job_id)))) / 1000

    def watchdog(self, ttl_s: float) -> contextlib.AbstractContextManager[bool]:
        """Hold the lease of the one watchdog pass running now (True), or learn another worker runs it."""
        return self._hold(keys.WATCHDOG_LOCK, ttl_s)

    @contextlib.contextmanager
    def _hold(self, key: str, ttl_s: float) -> Iterator[bool]:
        lock = self.redis.lock(key, timeout=ttl_s, blocking=False)
        got = bool(lock.acquire())
        try:
            yield got
        finally:
            if got:
                with contextlib.suppress(LockError):  # it ran out and another took it: not ours to free
                    lock.release()
