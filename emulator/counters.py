"""Request counters: per route template, per status, per job id, per uploaded filename, and early retries."""

from __future__ import annotations

from collections import Counter
from typing import Any

# Collections whose next path segment is an object id, and the name of that id in the route template.
_ID_AFTER = {
    "assistants": "{assistant_id}",
    "threads": "{thread_id}",
    "messages": "{message_id}",
    "runs": "{run_id}",
    "steps": "{step_id}",
    "files": "{file_id}",
    "vector_stores": "{vector_store_id}",
    "file_batches": "{batch_id}",
    "responses": "{response_id}",
    "conversations": "{conversation_id}",
    "items": "{item_id}",
}
# Fixed words that may follow a collection name without being an id.
_STATIC = {
    "runs",
    "cancel",
    "content",
    "submit_tool_outputs",
    "input_items",
    "input_tokens",
    "compact",
    "search",
}


def route_template(path: str) -> str:
    """`/v1/threads/thread_x/runs/run_y` -> `/v1/threads/{thread_id}/runs/{run_id}`."""
    parts = path.split("/")
    for index in range(1, len(parts)):
        name = _ID_AFTER.get(parts[index - 1])
        if name is not None and parts[index] and parts[index] not in _STATIC:
            parts[index] = name
    return "/".join(parts)


_RETRIEVES = frozenset({"GET /v1/responses/{response_id}", "GET /v1/threads/{thread_id}/runs/{run_id}"})
"""Retrieves counted per object (`retrieves_per_object`: response or run id -> retrieves), so a benchmark
can tell the requests each job cost."""

WEBHOOK_COUNTERS = {
    "deliveries": "deliveries planned: one per event and URL, plus the second copy of a duplicated one",
    "attempted": "POSTs made, first attempts and retries",
    "succeeded": "attempts answered 2xx (a delivery ends at its first)",
    "failed": "attempts answered non-2xx, not answered within the timeout, or not connected",
    "retried": "attempts after a delivery's first",
    "gave_up": "deliveries that used all their attempts without a 2xx",
    "dropped": "deliveries the drop fault never sent (not counted in deliveries)",
    "duplicated": "deliveries the duplicate fault sent twice",
    "reordered": "deliveries the reorder fault held back",
    "bad_signature": "deliveries the bad-signature fault signed with a wrong key",
}
"""The webhook counters, each with what it counts (`events` counts events created, per type)."""


class Counters:
    """What the emulator served, for tests and benchmarks to read through the admin API."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        """Zero everything, including the Retry-After deadlines used to spot early retries."""
        self.requests: Counter[str] = Counter()
        self.statuses: Counter[str] = Counter()
        self.route_statuses: dict[str, Counter[str]] = {}
        self.faults: Counter[str] = Counter()
        self.jobs: dict[str, Counter[str]] = {"runs": Counter(), "responses": Counter()}
        self.uploads: Counter[str] = Counter()
        self.early_retries = 0
        self.early_retry_routes: Counter[str] = Counter()
        self.retry_after: dict[str, float] = {}
        self.webhook_events: Counter[str] = Counter()
        self.webhooks: Counter[str] = Counter({name: 0 for name in WEBHOOK_COUNTERS})
        self.retrieves: Counter[str] = Counter()
        self.traced: set[str] = set()
        self.arrivals: list[tuple[float, str]] = []
        self.refusals: list[tuple[float, str, float]] = []

    def trace(self, routes: list[str]) -> None:
        """Keep the timeline of the routes ("METHOD template") in `routes` from now on, afresh: when each
        request arrived and when each 429 was answered and until when it asked to wait (`timeline`)."""
        self.traced = set(routes)
        self.arrivals, self.refusals = [], []

    def timeline(self) -> dict[str, Any]:
        """The traced routes' requests (arrival time, route) and 429s (answer time, route, wait until)."""
        return {
            "routes": sorted(self.traced),
            "arrivals": [list(row) for row in self.arrivals],
            "refusals": [list(row) for row in self.refusals],
        }

    def refused(self, key: str, at: float, until: float) -> None:
        """Note a 429 answered on `key` at `at` that asked to wait until `until` (on the timeline)."""
        if key in self.traced:
            self.refusals.append((at, key, until))

    def request(self, key: str, concrete: str, now: float) -> None:
        """Count one request to `key` ("METHOD template"); `concrete` identifies the request for early retries
        ("METHOD path", plus a digest of the body when it has one)."""
        self.requests[key] += 1
        if key in self.traced:
            self.arrivals.append((now, key))
        if key in _RETRIEVES:
            self.retrieves[concrete.rsplit("/", 1)[1]] += 1
        deadline = self.retry_after.get(concrete)
        if deadline is not None:
            if now < deadline:
                self.early_retries += 1
                self.early_retry_routes[key] += 1
            else:
                del self.retry_after[concrete]

    def status(self, key: str, status: int) -> None:
        """Count one response status for a route."""
        code = str(status)
        self.statuses[code] += 1
        per_route = self.route_statuses.get(key)
        if per_route is None:
            per_route = self.route_statuses[key] = Counter()
        per_route[code] += 1

    def gave_retry_after(self, concrete: str, until: float) -> None:
        """Remember that "METHOD path" was told not to retry before `until`."""
        self.retry_after[concrete] = until

    def count_job(self, kind: str, job_id: str | None) -> None:
        """Count a run or response created for a job id (from its `aj_job_id` metadata)."""
        if job_id:
            self.jobs[kind][job_id] += 1

    def snapshot(self) -> dict[str, Any]:
        """Everything, as JSON-ready dicts."""
        return {
            "total": sum(self.requests.values()),
            "requests": dict(self.requests),
            "statuses": dict(self.statuses),
            "route_statuses": {key: dict(value) for key, value in self.route_statuses.items()},
            "faults": dict(self.faults),
            "runs_per_job": dict(self.jobs["runs"]),
            "responses_per_job": dict(self.jobs["responses"]),
            "uploads_per_filename": dict(self.uploads),
            "early_retries": self.early_retries,
            "early_retries_per_route": dict(self.early_retry_routes),
            "retrieves_per_object": dict(self.retrieves),
            "webhooks": {"events": dict(self.webhook_events), **self.webhooks},
        }
