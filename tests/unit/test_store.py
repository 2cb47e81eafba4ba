"""The job store against a real redis-server: records, transitions, index, events, waits, retention."""

from __future__ import annotations

import threading
import time

import pytest
import redis

from schemas.job import IllegalTransition, JobKind, JobRecord, JobStatus
from worker import constants as c
from worker.store import JobStore, new_job_id


def make_store(client: redis.Redis, ttl: int = 3600) -> JobStore:
    return JobStore(client, result_ttl=ttl, idempotency_ttl=60, events_maxlen=1000)


def record(idempotency_key: str | None = None) -> JobRecord:
    now = time.time()
    return JobRecord(
        id=new_job_id(),
        kind=JobKind.RUN,
        request={"kind": "run"},
        created_at=now,
        updated_at=now,
        idempotency_key=idempotency_key,
    )


def test_created_job_is_queued_indexed_and_announced(redis_client: redis.Redis) -> None:
    store = make_store(redis_client)
    rec = record()
    job_id, created = store.create(rec)
    assert created and job_id == rec.id
    assert store.require(job_id).status == JobStatus.QUEUED
    assert [r.id for r in store.list(JobStatus.QUEUED)] == [job_id]
    assert [(e.type, e.job_id) for e in store.events()] == [("job.queued", job_id)]


def test_same_idempotency_key_returns_the_first_job(redis_client: redis.Redis) -> None:
    store = make_store(redis_client)
    first, created_first = store.create(record("order-42"))
    second, created_second = store.create(record("order-42"))
    assert (second, created_first, created_second) == (first, True, False)
    assert len(store.list()) == 1


def test_status_moves_are_checked_and_an_ended_job_never_changes(redis_client: redis.Redis) -> None:
    store = make_store(redis_client)
    job_id, _ = store.create(record())
    with pytest.raises(IllegalTransition):
        store.set_status(job_id, JobStatus.REQUIRES_ACTION)  # queued -> requires_action is not a move
    store.set_status(job_id, JobStatus.RUNNING)
    done = store.set_status(job_id, JobStatus.COMPLETED, result={"text": "hi"})
    assert done.finished_at is not None and done.started_at is not None
    with pytest.raises(IllegalTransition):
        store.set_status(job_id, JobStatus.FAILED)
    assert store.require(job_id).result == {"text": "hi"}
    assert [e.type for e in store.events()] == ["job.queued", "job.started", "job.completed"]
    assert store.list(JobStatus.RUNNING) == [] and [r.id for r in store.list(JobStatus.COMPLETED)] == [job_id]


def test_concurrent_writers_both_land(redis_client: redis.Redis) -> None:
    store = make_store(redis_client)
    job_id, _ = store.create(record())
    store.set_status(job_id, JobStatus.RUNNING)

    def bump(_: int) -> None:
        for _ in range(20):
            store.update(job_id, lambda r: r.model_copy(update={"attempts": r.attempts + 1}))

    threads = [threading.Thread(target=bump, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert store.require(job_id).attempts == 80


def test_wait_blocks_until_the_end_without_polling(redis_client: redis.Redis) -> None:
    store = make_store(redis_client)
    job_id, _ = store.create(record())
    store.set_status(job_id, JobStatus.RUNNING)
    threading.Timer(0.3, lambda: store.set_status(job_id, JobStatus.COMPLETED)).start()
    waiters: list[JobStatus] = []
    ts = [threading.Thread(target=lambda: waiters.append(store.wait(job_id, 5).status)) for _ in range(3)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert waiters == [JobStatus.COMPLETED] * 3


def test_wait_returns_the_live_record_at_its_timeout(redis_client: redis.Redis) -> None:
    store = make_store(redis_client)
    job_id, _ = store.create(record())
    assert store.wait(job_id, 0.2).status == JobStatus.QUEUED


def test_ended_records_expire_and_leave_no_index_entries(redis_client: redis.Redis) -> None:
    store = make_store(redis_client, ttl=1)
    old, _ = store.create(record())
    store.set_status(old, JobStatus.CANCELLED)
    time.sleep(2.1)
    assert store.get(old) is None
    # The next job to end prunes the index of jobs ended longer than the retention ago.
    new, _ = store.create(record())
    store.set_status(new, JobStatus.CANCELLED)
    members = [m.decode() for m in redis_client.zrange(c.STATUS_INDEX_KEY.format(status="cancelled"), 0, -1)]
    assert members == [new]
    assert [r.id for r in store.list()] == [new]


def test_events_can_be_followed_from_a_stream_id(redis_client: redis.Redis) -> None:
    store = make_store(redis_client)
    store.create(record())
    seen = store.events()
    second, _ = store.create(record())
    later = store.events(seen[-1].stream_id)
    assert [e.job_id for e in later] == [second]
    assert store.events(later[-1].stream_id, block_ms=100) == []
