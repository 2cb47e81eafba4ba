"""API request counts the workers add up in Redis, for the metrics exporter."""

from __future__ import annotations

from collections.abc import Mapping

import redis

from worker.store import keys
from worker.store.codec import text


class ApiCounters:
    """``{endpoint}|{outcome}`` -> count, summed over every worker process."""

    def __init__(self, client: redis.Redis):
        self.redis = client

    def add(self, counts: Mapping[str, int]) -> None:
        """Add ``counts`` (one pipelined HINCRBY per field)."""
        pipe = self.redis.pipeline(transaction=False)
        for field, n in counts.items():
            pipe.hincrby(keys.METRICS_API, field, n)
        pipe.execute()

    def all(self) -> dict[str, int]:
        """Every count so far."""
        return {text(k): int(v) for k, v in self.redis.hgetall(keys.METRICS_API).items()}
