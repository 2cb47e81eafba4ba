"""The shared Retry-After: per endpoint, the time before which no worker calls it."""

from __future__ import annotations

import redis

from worker.store import keys


class Gates:
    """One key per endpoint (``METHOD /path``), holding a unix time and expiring with it."""

    def __init__(self, client: redis.Redis):
        self.redis = client

    def until(self, route: str) -> float:
        """Until when ``route`` is closed (0 when open)."""
        raw = self.redis.get(keys.GATE.format(route=route))
        return float(raw) if raw is not None else 0.0

    def close(self, route: str, until: float, wait_s: float) -> None:
        """Close ``route`` for every worker until ``until`` (``wait_s`` from now)."""
        self.redis.set(keys.GATE.format(route=route), f"{until:.3f}", px=max(int(wait_s * 1000), 1))
