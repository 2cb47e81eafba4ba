"""The exporter's view of Redis and the endpoint labels, on fakeredis."""

from __future__ import annotations

import time

import fakeredis
from prometheus_client import generate_latest

from worker import constants as c
from worker.metrics import ApiCounts, endpoint, outcome, registry


def test_endpoint_labels_hide_object_ids() -> None:
    assert endpoint("post", "/v1/threads/thread_abc123/runs") == "POST /threads/{id}/runs"
    assert endpoint("GET", "/v1/vector_stores/vs_9/files/file-X9Z") == "GET /vector_stores/{id}/files/{id}"
    assert [outcome(s) for s in (200, 404, 429, 400, 503)] == [
        "ok", "not_found", "rate_limited", "client_error", "server_error",
    ]  # fmt: skip


def test_the_exporter_reports_jobs_polls_api_requests_and_the_inventory() -> None:
    # Given some jobs, polls, counted API requests and inventory entries in Redis
    r = fakeredis.FakeRedis()
    r.zadd(c.STATUS_INDEX_KEY.format(status="running"), {"job_1": 1, "job_2": 2})
    r.zadd(c.POLLS_KEY, {"job_1": (time.time() - 3) * 1000, "job_2": (time.time() + 60) * 1000})
    r.hset(c.POLL_META_KEY, mapping={"job_1": '{"op": "run"}', "job_2": '{"op": "index"}'})
    counts = ApiCounts(r)
    counts.add("DELETE", "/v1/threads/thread_1", "ok")
    counts.add("DELETE", "/v1/threads/thread_2", "not_found")
    counts.flush()
    r.zadd(c.INVENTORY_THREADS_KEY, {"thread_1": 1})

    # When it is scraped
    text = generate_latest(registry(r, follow_events=False)).decode()

    # Then every figure is there under its documented name
    assert 'aj_jobs{status="running"} 2.0' in text
    assert "aj_runs_in_flight 1.0" in text
    assert "aj_polls_due 1.0" in text
    lag = float(
        next(line for line in text.splitlines() if line.startswith("aj_poll_lag_seconds ")).split()[1]
    )
    assert 2.5 < lag < 10
    assert 'aj_api_requests_total{endpoint="DELETE /threads/{id}",outcome="ok"} 1.0' in text
    assert 'aj_api_errors_total{class="not_found"} 1.0' in text
    assert 'aj_inventory_objects{kind="threads"} 1.0' in text
