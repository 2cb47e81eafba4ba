"""A Retry-After shared by every worker: a 429 or 503 that names a wait closes that endpoint (METHOD and
path) for all workers until then, and a request to a closed endpoint is not sent.

Polls have their own per-run backoff; this covers the SDK calls of tasks, where many jobs share an
endpoint (every background response is created by ``POST /v1/responses``). The close reaches every other
process as a pub/sub announcement (`worker.store.gates`), so a check costs no Redis round trip and no
process trusts a stale "open" for a cache period.
"""

from __future__ import annotations

import time

import httpx2

from worker.errors import RateGateClosed, retry_after_seconds
from worker.store.gates import Gates


class RateGate:
    """Request and response hooks for the SDK's HTTP client, backed by the store's gates."""

    def __init__(self, gates: Gates):
        self.gates = gates
        self.watch = gates.watch()

    @staticmethod
    def route(request: httpx2.Request) -> str:
        """``METHOD /path`` of a request (no query)."""
        return f"{request.method} {request.url.path}"

    def check(self, request: httpx2.Request) -> None:
        """Refuse to send while the endpoint's Retry-After has not passed."""
        route = self.route(request)
        wait = self.watch.until(route) - time.time()
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
            self.watch.closed_here(route, until)
            self.gates.close(route, until, wait)
