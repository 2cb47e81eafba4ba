"""A Retry-After shared by every worker: a 429 or 503 that names a wait closes that endpoint (METHOD and
path) for all workers until then, and a request to a closed endpoint is not sent.

Polls have their own per-run backoff; this covers the SDK calls of tasks, where many jobs share an
endpoint (every background response is created by ``POST /v1/responses``).
"""

from __future__ import annotations

import time

import httpx2

from worker.errors import RateGateClosed, retry_after_seconds
from worker.store.gates import Gates

OPEN_CACHE_S = 0.25
"""How long a process trusts that an endpoint is open before asking Redis again. A 429 this process
gets closes the gate here at once; one another worker got is seen within this time."""


class RateGate:
    """Request and response hooks for the SDK's HTTP client, backed by the store's gates."""

    def __init__(self, gates: Gates):
        self.gates = gates
        self._until: dict[str, float] = {}
        """Per endpoint: until when it is closed (a future time), or open (the past, when last checked)."""
        self._checked: dict[str, float] = {}

    @staticmethod
    def route(request: httpx2.Request) -> str:
        """``METHOD /path`` of a request (no query)."""
        return f"{request.method} {request.url.path}"

    def check(self, request: httpx2.Request) -> None:
        """Refuse to send while the endpoint's Retry-After has not passed."""
        route = self.route(request)
        now = time.time()
        if now - self._checked.get(route, 0.0) > OPEN_CACHE_S:
            self._until[route] = self.gates.until(route)
            self._checked[route] = now
        wait = self._until.get(route, 0.0) - now
        if wait > 0:
            raise RateGateClosed(route, wait)

    def record(self, response: httpx2.Response) -> None:
        """Close the endpoint for everyone when the server asked to wait."""
        if response.status_code not in (429, 503):
            return
        wait = retry_after_seconds(response.headers)
        if wait:
            until = time.time() + wait
            route = self.route(response.request)
            self._until[route] = max(until, self._until.get(route, 0.0))
            self.gates.close(route, until, wait)
