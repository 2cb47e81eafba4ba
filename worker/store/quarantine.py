"""Malformed broker messages a worker set aside instead of dying on them (see `worker.broker`)."""

from __future__ import annotations

import redis

from worker.store import keys

QUARANTINE_MAX = 1_000
"""Most messages kept: the newest."""


class Quarantine:
    """The capped list of malformed broker messages, newest first."""

    def __init__(self, client: redis.Redis) -> None:
        self.redis = client

    def keep(self, raw: bytes) -> None:
        """Keep ``raw``, dropping the oldest beyond `QUARANTINE_MAX`."""
        pipe = self.redis.pipeline(transaction=True)
        pipe.lpush(keys.QUARANTINE, raw)
        pipe.ltrim(keys.QUARANTINE, 0, QUARANTINE_MAX - 1)
        pipe.execute()

    def held(self) -> list[bytes]:
        """The messages kept, newest first."""
        rows: list[bytes] = self.redis.lrange(keys.QUARANTINE, 0, -1)  # type: ignore[assignment]
        return rows
