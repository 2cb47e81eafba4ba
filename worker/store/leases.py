"""Step leases: the one task that may do a job's creating step now (a run's create, an indexing job's
uploads and batches, a clean-up's deletes), so a duplicate message never does it twice at once.

A lease is redis-py's `Lock` with an owner token and a TTL of the hard time limit: a killed holder's lease
is gone before its message is redelivered, and a holder only ever releases its own.
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
