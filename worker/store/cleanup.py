"""A clean-up job's list of deletes still to do, and the delete rate every sweep on every host shares."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import orjson
import redis

from worker.store import keys
from worker.store.scripts import source


class CleanupQueue:
    """Per clean-up job: the deletes planned and not yet done, oldest first."""

    def __init__(self, client: redis.Redis):
        self.redis = client

    def plan(self, job_id: str, items: Sequence[dict[str, Any]], ttl_s: int) -> None:
        """Replace the job's list with ``items`` (``{"t": target, "id": ...}``), kept ``ttl_s`` at most."""
        key = keys.CLEANUP_TODO.format(job_id=job_id)
        pipe = self.redis.pipeline(transaction=True)
        pipe.delete(key)
        if items:
            pipe.rpush(key, *(orjson.dumps(item) for item in items))
            pipe.expire(key, ttl_s)
        pipe.execute()

    def head(self, job_id: str) -> dict[str, Any] | None:
        """The next delete, or None when none is left."""
        raw = self.redis.lindex(keys.CLEANUP_TODO.format(job_id=job_id), 0)
        return orjson.loads(raw) if raw is not None else None

    def pop(self, job_id: str) -> None:
        """Mark the next delete done."""
        self.redis.lpop(keys.CLEANUP_TODO.format(job_id=job_id))

    def drop(self, job_id: str) -> None:
        """Forget the job's list (it ended)."""
        self.redis.delete(keys.CLEANUP_TODO.format(job_id=job_id))


class Pace:
    """The shared delete rate: at most ``per_s`` deletes a second across all clean-up tasks."""

    def __init__(self, client: redis.Redis, per_s: float):
        self.gap = 1.0 / per_s
        self._reserve = client.register_script(source("pace"))

    def reserve(self) -> float:
        """Reserve the next slot; the seconds to wait for it."""
        return float(self._reserve(keys=[keys.CLEANUP_PACE], args=[f"{time.time():.6f}", self.gap]))
