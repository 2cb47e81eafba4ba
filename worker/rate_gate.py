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
        """Refuse to send while the endpoint's Retry-After has not passed (the SDK's request hook)."""
        self.check_route(self.route(request))

    def record(self, response: httpx2.Response) -> None:
        """Close the endpoint for everyone when the server asked to wait (the SDK's response hook)."""
        self.record_status(self.route(response.request), response.status_code, response.headers)

    def check_route(self, route: str) -> None:
        """Refuse to send to ``route`` (``METHOD /path``) while its Retry-After has not passed."""
        wait = self.watch.until(route) - time.time()
        if wait > 0:
            raise RateGateClosed(route, wait)

    def record_status(self, route: str, status: int, headers: object) -> None:
        """Close ``route`` for everyone when an answer of ``status`` with ``headers`` asked to wait."""
        if status not in (429, 503):
            return
        wait = retry_after_seconds(headers)
        if wait:
            until = time.time() + wait
            self.watch.closed_here(route, until)
            self.gates.close(route, until, wait)
