"""The exporter's view of Redis (against a real redis-server) and the endpoint labels."""

from __future__ import annotations

import time

import redis
from prometheus_client import generate_latest

from schemas.job import JobKind, JobRecord, JobStatus
from worker.metrics import ApiCounts, endpoint, outcome, registry
from worker.polls import BatchPoll, RunPoll, TaskDue
from worker.store import NewJob, Store, new_job_id


def test_endpoint_labels_hide_object_ids() -> None:
    assert endpoint("post", "/v1/threads/thread_abc123/runs") == "POST /threads/{id}/runs"
    assert endpoint("GET", "/v1/vector_stores/vs_9/files/file-X9Z") == "GET /vector_stores/{id}/files/{id}"
    assert [outcome(s) for s in (200, 404, 429, 400, 503)] == [
        "ok", "not_found", "rate_limited", "client_error", "server_error",
    ]  # fmt: skip


def running_job(store: Store, kind: JobKind) -> str:
    now = time.time()
    record = JobRecord(id=new_job_id(), kind=kind, request={}, created_at=now, updated_at=now)
    store.jobs.submit([NewJob(record, None, TaskDue("aj.run.start"), "task-1")], 10.0)
    store.jobs.set_status(record.id, JobStatus.RUNNING)
    return record.id


def test_the_exporter_reports_jobs_polls_api_requests_and_the_inventory(redis_client: redis.Redis) -> None:
    # Given two running jobs, a run poll overdue by 3 s and a batch poll due in a minute, counted API
    # requests and a recorded thread
    store = Store.on(redis_client, result_ttl=60, idempotency_ttl=60, events_maxlen=1000)
    run, index = running_job(store, JobKind.RUN), running_job(store, JobKind.INDEX)
    store.schedule.put(run, RunPoll(path="/responses/resp_1"), -3.0)
    store.schedule.put(index, BatchPoll(vector_store_id="vs_1", open=["vsfb_1"]), 60.0)
    counts = ApiCounts(store.counters)
    counts.add("DELETE", "/v1/threads/thread_1", "ok")
    counts.add("DELETE", "/v1/threads/thread_2", "not_found")
    counts.flush()
    store.inventory.record_created({"thread_id": "thread_1"})

    # When it is scraped
    text = generate_latest(registry(store, follow_events=False)).decode()

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


class ClosedUnder:
    """API counters whose connection another thread closed mid-write the first time (redis-py then raises
    from the socket, not a RedisError), and that write the next time."""

    def __init__(self) -> None:
        self.written: list[dict[str, int]] = []
        self.calls = 0

    def add(self, counts: dict[str, int]) -> None:
        self.calls += 1
        if self.calls == 1:
            raise ValueError("I/O operation on closed file.")
        self.written.append(dict(counts))


def test_counts_a_write_lost_to_a_closed_connection_are_kept_for_the_next_flush() -> None:
    # Given a request counted, and a first write that fails as a connection closed under it does
    counters = ClosedUnder()
    counts = ApiCounts(counters)  # type: ignore[arg-type]
    counts.add("GET", "/v1/responses/resp_1", "ok")
    counts.flush()
    # When the next flush comes, with a request counted since
    counts.add("GET", "/v1/responses/resp_2", "ok")
    counts.flush()
    # Then both requests are written, once
    assert counters.written == [{f"{endpoint('GET', '/v1/responses/resp_1')}|ok": 2}]
