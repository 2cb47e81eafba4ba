"""The job store against a real redis-server: records, transitions, index, events, waits, retention,
the outbox at submit, and records that cannot be read."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest
import redis
import redis.asyncio as aioredis

from schemas.job import IllegalTransition, JobKind, JobRecord, JobStatus
from worker.polls import RunPoll, TaskDue
from worker.store import NewJob, Store, new_job_id
from worker.store.aio import AsyncStore


def make_store(client: redis.Redis, ttl: int = 3600) -> Store:
    return Store.on(client, result_ttl=ttl, idempotency_ttl=60, events_maxlen=1000)


def record(idempotency_key: str | None = None, **request: object) -> JobRecord:
    now = time.time()
    return JobRecord(
        id=new_job_id(),
        kind=JobKind.RUN,
        request={"kind": "run", **request},
        created_at=now,
        updated_at=now,
        idempotency_key=idempotency_key,
    )


def submit(
    store: Store, rec: JobRecord, thread: str | None = None, grace_s: float = 10.0
) -> tuple[str, bool]:
    new = NewJob(rec, thread, TaskDue("aj.run.start", [[rec.id]]), "task-1")
    [(job_id, created)] = store.jobs.submit([new], grace_s).results
    return job_id, created


def test_created_job_is_queued_indexed_and_announced(redis_client: redis.Redis) -> None:
    store = make_store(redis_client)
    rec = record()
    job_id, created = submit(store, rec)
    assert created and job_id == rec.id
    assert store.jobs.require(job_id).status == JobStatus.QUEUED
    assert [r.id for r in store.jobs.list(JobStatus.QUEUED)] == [job_id]
    assert [(e.type, e.job_id) for e in store.jobs.events()] == [("job.queued", job_id)]


def test_a_submitted_job_s_start_waits_in_the_outbox_until_it_is_sent(redis_client: redis.Redis) -> None:
    # Given a job submitted with its start staged but not yet sent
    store = make_store(redis_client)
    rec = record()
    submitted = store.jobs.submit([NewJob(rec, None, TaskDue("aj.run.start", [[rec.id]]), "task-1")], 0.0)
    job_id = rec.id
    # Then the poll loop would send it: it is on the schedule, due, as a start of this job alone
    assert store.schedule.entry(job_id) == TaskDue("aj.run.start", [[job_id]])
    assert store.schedule.due() == 1
    # When the producer sent it and parks it
    store.schedule.park([job_id], submitted.token, "task-1")
    # Then it stays on the schedule as a message in flight, never due
    assert store.schedule.due() == 0 and store.schedule.size() == 1
    # And the task that runs the message, having given the job nothing new, clears it; another task cannot
    assert store.schedule.clear_sent([job_id], "task-other") == 0
    assert store.schedule.clear_sent([job_id], "task-1") == 1
    assert store.schedule.size() == 0


def test_a_job_submitted_on_a_thread_takes_its_place_in_the_thread_s_queue(redis_client: redis.Redis) -> None:
    store = make_store(redis_client)
    first, _ = submit(store, record(), thread="thread_1")
    second, _ = submit(store, record(), thread="thread_1")
    assert store.threads.waiting("thread_1") == [first, second]


def test_same_idempotency_key_returns_the_first_job(redis_client: redis.Redis) -> None:
    store = make_store(redis_client)
    first, created_first = submit(store, record("order-42"))
    second, created_second = submit(store, record("order-42"))
    assert (second, created_first, created_second) == (first, True, False)
    assert len(store.jobs.list()) == 1
    assert store.schedule.size() == 1  # one start staged, not two


def test_status_moves_are_checked_and_an_ended_job_never_changes(redis_client: redis.Redis) -> None:
    store = make_store(redis_client)
    job_id, _ = submit(store, record())
    with pytest.raises(IllegalTransition):
        store.jobs.set_status(job_id, JobStatus.REQUIRES_ACTION)  # queued -> requires_action is not a move
    store.jobs.set_status(job_id, JobStatus.RUNNING)
    done = store.jobs.set_status(job_id, JobStatus.COMPLETED, result={"text": "hi"})
    assert done.finished_at is not None and done.started_at is not None
    with pytest.raises(IllegalTransition):
        store.jobs.set_status(job_id, JobStatus.FAILED)
    assert store.jobs.require(job_id).result == {"text": "hi"}
    assert [e.type for e in store.jobs.events()] == ["job.queued", "job.started", "job.completed"]
    running, completed = store.jobs.list(JobStatus.RUNNING), store.jobs.list(JobStatus.COMPLETED)
    assert running == [] and [r.id for r in completed] == [job_id]


def test_an_end_takes_the_job_off_the_schedule_in_the_same_write(redis_client: redis.Redis) -> None:
    store = make_store(redis_client)
    job_id, _ = submit(store, record())
    store.jobs.set_status(job_id, JobStatus.RUNNING)
    store.schedule.put(job_id, RunPoll(path="/responses/resp_1"), 1.0)
    store.jobs.set_status(job_id, JobStatus.FAILED)
    assert store.schedule.entry(job_id) is None and store.schedule.size() == 0


def test_concurrent_writers_both_land(redis_client: redis.Redis) -> None:
    store = make_store(redis_client)
    job_id, _ = submit(store, record())
    store.jobs.set_status(job_id, JobStatus.RUNNING)

    def bump(_: int) -> None:
        for _ in range(20):
            store.jobs.update(job_id, lambda r: r.model_copy(update={"attempts": r.attempts + 1}))

    threads = [threading.Thread(target=bump, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert store.jobs.require(job_id).attempts == 80


def test_wait_blocks_until_the_end_without_polling(redis_client: redis.Redis) -> None:
    store = make_store(redis_client)
    job_id, _ = submit(store, record())
    store.jobs.set_status(job_id, JobStatus.RUNNING)
    started = threading.Barrier(4)
    waiters: list[JobStatus] = []

    def wait() -> None:
        started.wait()
        waiters.append(store.jobs.wait(job_id, 30).status)

    ts = [threading.Thread(target=wait) for _ in range(3)]
    for t in ts:
        t.start()
    started.wait()
    store.jobs.set_status(job_id, JobStatus.COMPLETED)
    for t in ts:
        t.join()
    assert waiters == [JobStatus.COMPLETED] * 3


def test_wait_returns_the_live_record_at_its_timeout(redis_client: redis.Redis) -> None:
    store = make_store(redis_client)
    job_id, _ = submit(store, record())
    assert store.jobs.wait(job_id, 0.2).status == JobStatus.QUEUED


def test_a_wait_with_under_a_millisecond_left_returns_instead_of_blocking_for_ever(redis_url: str) -> None:
    # Given a queued job, and a client that gives up on a reply after 5 s (Redis 6.2 reads a blocking
    # timeout of 0.001 s as 0, "for ever")
    client = redis.Redis.from_url(redis_url, socket_timeout=5)
    store = make_store(client)
    job_id, _ = submit(store, record())
    # When it is waited on with less than a millisecond to go, from both clients
    record_now = store.jobs.wait(job_id, 0.0005)

    async def wait_async() -> JobRecord:
        astore = AsyncStore.on(
            aioredis.Redis.from_url(redis_url, socket_timeout=5),
            result_ttl=3600,
            idempotency_ttl=60,
            events_maxlen=1000,
        )
        try:
            return await astore.jobs.wait(job_id, 0.0005)
        finally:
            await astore.aclose()

    # Then each wait gives the live record back at once
    assert record_now.status == JobStatus.QUEUED
    assert asyncio.run(wait_async()).status == JobStatus.QUEUED
    client.close()


def test_ended_records_expire_and_leave_no_index_entries(redis_client: redis.Redis) -> None:
    store = make_store(redis_client, ttl=1)
    old, _ = submit(store, record())
    store.jobs.set_status(old, JobStatus.CANCELLED)
    deadline = time.monotonic() + 30
    while store.jobs.get(old) is not None:  # Redis expires the record after its 1 s retention
        assert time.monotonic() < deadline, "the ended record never expired"
        time.sleep(0.1)
    # The next job to end prunes the index of jobs ended longer than the retention ago.
    time.sleep(1.1)
    new, _ = submit(store, record())
    store.jobs.set_status(new, JobStatus.CANCELLED)
    assert [r.id for r in store.jobs.list()] == [new]
    assert store.jobs.sweep(dry_run=True, events_before=0)["index_entries"] == 0


def test_events_can_be_followed_from_a_stream_id(redis_client: redis.Redis) -> None:
    store = make_store(redis_client)
    submit(store, record())
    seen = store.jobs.events()
    second, _ = submit(store, record())
    later = store.jobs.events(seen[-1].stream_id)
    assert [e.job_id for e in later] == [second]
    assert store.jobs.events(later[-1].stream_id, block_ms=100) == []


@pytest.mark.parametrize("garbage", ["not json {", '{"id": "x"}', "[1, 2, 3]"])
def test_a_record_that_cannot_be_read_ends_failed_as_corrupt_and_breaks_no_reader(
    redis_client: redis.Redis, garbage: str
) -> None:
    # Given a running job with a poll, and a healthy one beside it
    store = make_store(redis_client)
    broken, _ = submit(store, record())
    healthy, _ = submit(store, record())
    store.jobs.set_status(broken, JobStatus.RUNNING)
    store.schedule.put(broken, RunPoll(path="/responses/resp_1"), 1.0)
    # When its record is overwritten with something that does not parse
    redis_client.hset(f"aj:job:{broken}", "record", garbage)
    # Then listing still works and shows it failed with corrupt_record, the raw text kept
    listed = {r.id: r for r in store.jobs.list()}
    assert set(listed) == {broken, healthy}
    assert listed[broken].status == JobStatus.FAILED
    assert listed[broken].error is not None and listed[broken].error.code == "corrupt_record"
    assert listed[broken].result == {"corrupt_record": garbage}
    # And it is dead-lettered, announced, off the schedule, and its waiters wake
    assert [r.id for r in store.jobs.dead()] == [broken]
    assert ("job.failed", broken) in [(e.type, e.job_id) for e in store.jobs.events()]
    assert store.schedule.entry(broken) is None
    assert store.jobs.wait(broken, 1).status == JobStatus.FAILED
    # And any later change of it is refused like a change of any ended job
    with pytest.raises(IllegalTransition):
        store.jobs.set_status(broken, JobStatus.COMPLETED)


def test_a_step_lease_is_freed_only_by_its_holder(redis_client: redis.Redis) -> None:
    # Given a task holding a job's lease past its TTL (stalled), and another task that took it over
    store = make_store(redis_client)
    with store.leases.hold("job_1", ttl_s=0.2) as first:
        assert first
        with store.leases.hold("job_1", ttl_s=30) as meanwhile:
            assert not meanwhile  # held: a duplicate message does not do the step at once
        deadline = time.monotonic() + 10
        while redis_client.exists("aj:lease:job_1"):  # the first holder's TTL runs out
            assert time.monotonic() < deadline
            time.sleep(0.05)
        second = store.leases.hold("job_1", ttl_s=30)
        assert second.__enter__()
    # When the first holder finally lets go
    # Then the second holder's lease stands: a late holder only ever frees its own
    with store.leases.hold("job_1", ttl_s=30) as third:
        assert not third
    second.__exit__(None, None, None)
    with store.leases.hold("job_1", ttl_s=30) as fourth:
        assert fourth


def test_a_thread_goes_to_the_next_live_job_in_line_with_its_start_staged(redis_client: redis.Redis) -> None:
    # Given three jobs queued on one thread at submit, the second of which is cancelled
    store = make_store(redis_client)
    first, second, third = (submit(store, record(), thread="thread_1")[0] for _ in range(3))
    store.jobs.set_status(second, JobStatus.CANCELLED)
    # When the first takes the thread, the third asks for it, and the first lets go
    assert store.threads.acquire("thread_1", first, "enqueue").turn == "acquired"
    waiting = store.threads.acquire("thread_1", third, "enqueue")
    assert (waiting.turn, waiting.other) == ("waiting", first)
    handover = store.threads.release("thread_1", first, TaskDue("aj.run.start"), "task-9", 10.0)
    # Then the thread passes over the cancelled job to the third, whose start waits in the outbox
    assert handover is not None and handover.job_id == third
    assert store.threads.waiting("thread_1") == [third]
    assert store.schedule.entry(third) == TaskDue("aj.run.start", [[third]])
    assert store.threads.busy(["thread_1", "thread_2"]) == {"thread_1"}


def test_reject_fails_fast_on_a_held_thread_and_a_dead_holder_is_passed_over(
    redis_client: redis.Redis,
) -> None:
    store = make_store(redis_client)
    holder, other = submit(store, record())[0], submit(store, record())[0]
    assert store.threads.acquire("thread_1", holder, "enqueue").turn == "acquired"
    assert store.threads.acquire("thread_1", other, "reject").turn == "busy"
    store.jobs.set_status(holder, JobStatus.FAILED)  # it ended without releasing (its worker died)
    assert store.threads.acquire("thread_1", other, "reject").turn == "acquired"
