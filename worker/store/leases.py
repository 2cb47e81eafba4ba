"""Step leases: the one task that may do a job's creating step now (a run's create, an indexing job's
uploads and batches, a clean-up's deletes), so a duplicate message never does it twice at once.

A lease is redis-py's `Lock` with an owner token and a TTL of the hard time limit, and a holder only ever
releases its own. On Redis as the broker a killed holder's lease is gone before its message is redelivered
(the visibility timeout is longer); RabbitMQ redelivers at once, so a step that finds the lease held comes
back when it lapses (`remaining`).
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterable, Iterator, Mapping

import redis
from redis.exceptions import LockError

from worker.store import keys
from worker.store.scripts import source


class Leases:
    """Per-job step leases."""

    def __init__(self, client: redis.Redis):
        self.redis = client
        self._release = client.register_script(source("lease_release"))

    def hold(self, job_id: str, ttl_s: float) -> contextlib.AbstractContextManager[bool]:
        """Hold the job's lease (True) or learn that another task holds it (False), without waiting."""
        return self._hold(keys.LEASE.format(job_id=job_id), ttl_s)

    def remaining(self, job_id: str) -> float:
        """Seconds until the job's lease lapses (0 when nobody holds it)."""
        return max(0, int(self.redis.pttl(keys.LEASE.format(job_id=job_id)))) / 1000

    def take(self, job_ids: Iterable[str], ttl_s: float) -> dict[str, str]:
        """Take the leases of many jobs in one round trip, without waiting: ``job id -> token`` for each
        taken (a job whose lease another task holds is left out). The same leases as `hold`'s."""
        ids = list(job_ids)
        tokens = [uuid.uuid4().hex for _ in ids]
        pipe = self.redis.pipeline(transaction=False)
        for job_id, token in zip(ids, tokens, strict=True):
            pipe.set(keys.LEASE.format(job_id=job_id), token, nx=True, px=max(int(ttl_s * 1000), 1))
        taken = pipe.execute()
        return {j: t for j, t, ok in zip(ids, tokens, taken, strict=True) if ok}

    def give_back(self, tokens: Mapping[str, str]) -> None:
        """Release leases `take` gave (``job id -> token``) in one round trip; one that ran out and was
        taken by another task stays that task's."""
        if not tokens:
            return
        pipe = self.redis.pipeline(transaction=False)
        for job_id, token in tokens.items():
            self._release(keys=[keys.LEASE.format(job_id=job_id)], args=[token], client=pipe)
        pipe.execute()

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
