"""The shared Retry-After: per endpoint, the time before which no worker calls it.

A close is a key (so a process that starts later still learns of it) and a message on a pub/sub channel
(so every running process learns of it as it happens, with no polling). `GateWatch` keeps one process's
view current from those messages: a check costs a non-blocking read of the subscription, not a round trip.
"""

from __future__ import annotations

import threading

import redis

from worker.store import keys
from worker.store.codec import text

CHANNEL = keys.PREFIX + "gates"
"""Pub/sub channel on which every close is announced as ``until|route``."""


class Gates:
    """One key per endpoint (``METHOD /path``), holding a unix time and expiring with it."""

    def __init__(self, client: redis.Redis):
        self.redis = client

    def until(self, route: str) -> float:
        """Until when ``route`` is closed (0 when open)."""
        raw = self.redis.get(keys.GATE.format(route=route))
        return float(raw) if raw is not None else 0.0

    def close(self, route: str, until: float, wait_s: float) -> None:
        """Close ``route`` for every worker until ``until`` (``wait_s`` from now), and announce it."""
        pipe = self.redis.pipeline(transaction=True)
        pipe.set(keys.GATE.format(route=route), f"{until:.3f}", px=max(int(wait_s * 1000), 1))
        pipe.publish(CHANNEL, f"{until:.3f}|{route}")
        pipe.execute()

    def watch(self) -> GateWatch:
        """A view of every gate kept current by the announcements."""
        return GateWatch(self)


class GateWatch:
    """One process's view of the gates. `until` drains the announcements received so far (a
    non-blocking read) and answers from memory; a route is read from Redis once, the first time it is
    asked about, and again after the subscription had to be re-established (closes announced while it was
    down would otherwise be missed)."""

    def __init__(self, gates: Gates):
        self.gates = gates
        self._lock = threading.Lock()
        self._known: dict[str, float] = {}
        self._pubsub: redis.client.PubSub | None = None

    def until(self, route: str) -> float:
        """Until when ``route`` is closed, as of every announcement received."""
        with self._lock:
            if not self._drain():
                self._known.clear()  # subscribed afresh: what we knew may be stale
            if route not in self._known:
                self._known[route] = self.gates.until(route)
            return self._known[route]

    def closed_here(self, route: str, until: float) -> None:
        """Note a close this process made itself (before its announcement comes back)."""
        with self._lock:
            self._known[route] = max(until, self._known.get(route, 0.0))

    def _drain(self) -> bool:
        """Apply every announcement waiting; False when the subscription is new (or was lost)."""
        fresh = False
        if self._pubsub is None:
            self._pubsub = self.gates.redis.pubsub()  # type: ignore[no-untyped-call]
            self._pubsub.subscribe(CHANNEL)
            fresh = True
        try:
            while (message := self._pubsub.get_message(timeout=0)) is not None:
                if message["type"] != "message":
                    continue  # the subscription's own confirmation
                until, _, route = text(message["data"]).partition("|")
                self._known[route] = max(float(until), self._known.get(route, 0.0))
        except redis.RedisError:
            self._pubsub = None  # resubscribe at the next check, and read the routes afresh
            return False
        return not fresh

    def close(self) -> None:
        """Drop the subscription."""
        with self._lock:
            if self._pubsub is not None:
                self._pubsub.close()
                self._pubsub = None
