"""Clean-up jobs end to end: real workers, the emulator over HTTP, the inventory filled by real run jobs."""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import openai
import pytest
import redis
from helpers import WorkerProcess

from emulator.server import EmulatorHandle
from schemas.job import JobRecord, JobStatus
from worker.client import Jobs
from worker.settings import Settings
from worker.store.inventory import Conversational, managed_metadata

HOUR = 3600.0


class _NoBroker:
    """A Celery stand-in that sends nothing: a job submitted through it stays queued, as one whose start
    message still waits in a long broker queue."""

    def send_task(self, *args: Any, **kwargs: Any) -> None:
        return None


@pytest.fixture
def api(emulator: EmulatorHandle) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=emulator.base_url, api_key="sk-test", max_retries=0) as client:
        yield client


@pytest.fixture
def beta(api: openai.OpenAI) -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return api.beta


def _exists(fetch: Callable[[], Any]) -> bool:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            fetch()
    except openai.NotFoundError:
        return False
    return True


def _settled(jobs: Jobs, threads: list[str], timeout: float = 10.0) -> None:
    """Wait until every thread is released: a job's end state is written before its thread's last touch
    and release, so a waiter may wake a moment before them."""
    deadline = time.monotonic() + timeout
    while any(jobs.store.threads.waiting(t) for t in threads):
        assert time.monotonic() < deadline, "threads still held"
        time.sleep(0.05)


def _sweep(jobs: Jobs, **request: Any) -> JobRecord:
    ref = jobs.submit({"kind": "cleanup", **request})
    record = jobs.wait(ref.id, timeout=30)
    assert record.status == JobStatus.COMPLETED, record
    assert record.result is not None
    return record


def test_thread_sweep_deletes_exactly_the_idle_threads_without_a_job_and_a_dry_run_lists_them(
    jobs: Jobs,
    worker: Callable[..., WorkerProcess],
    beta: Any,
    emulator: EmulatorHandle,
    redis_client: redis.Redis,
    settings: Settings,
) -> None:
    # Given 30 threads created by run jobs (so recorded by the runs themselves), a deletes pace of 4 a
    # second and chunks of about one second (the soft time limit is 2 s)
    worker(
        extra_env={"AJ_CLEANUP_DELETES_PER_S": "4", "AJ_TASK_SOFT_TIME_LIMIT": "2", "AJ_TASK_TIME_LIMIT": "3"}
    )
    assistant = beta.assistants.create(model="gpt-4o")
    refs = jobs.submit_many(
        [
            {
                "kind": "run",
                "assistant_id": assistant.id,
                "messages": [{"role": "user", "content": f"hi {i}"}],
            }
            for i in range(30)
        ]
    )
    records = [jobs.wait(ref.id, timeout=30) for ref in refs]
    assert [r.status for r in records] == [JobStatus.COMPLETED] * 30
    threads = [r.remote["thread_id"] for r in records]
    assert {t for t, _ in jobs.store.inventory.idle(Conversational.THREAD, time.time() + 1)} == set(threads)
    # ...of which 10 have been idle for two hours, and one of those has a job queued on it
    _settled(jobs, threads)
    idle = threads[:10]
    for thread in idle:
        jobs.store.inventory.touch({"thread_id": thread}, at=time.time() - 2 * HOUR)
    queued = Jobs(settings, jobs.store, celery=_NoBroker()).submit(  # type: ignore[arg-type]
        {
            "kind": "run",
            "assistant_id": assistant.id,
            "thread_id": idle[0],
            "messages": [{"role": "user", "content": "later"}],
        }
    )
    assert jobs.get(queued.id).status == JobStatus.QUEUED
    expected = sorted(idle[1:])

    # When a dry run sweeps threads idle for more than an hour
    dry = _sweep(jobs, targets=["threads"], dry_run=True, idle_s=HOUR)
    # Then it lists the other 9, names why it skips the tenth, and deletes nothing
    part = dry.result["targets"]["threads"]  # type: ignore[index]
    assert sorted(part["would_delete"]) == expected
    assert part["skipped"] == {"active job": 1}
    assert part["skipped_ids"] == {"active job": [idle[0]]}
    assert part["deleted"] == 0
    assert all(_exists(lambda t=t: beta.threads.retrieve(t)) for t in threads)
    assert not [k for k in emulator.counters()["requests"] if k.startswith("DELETE")]

    # When the real sweep runs
    real = _sweep(jobs, targets=["threads"], idle_s=HOUR)
    # Then exactly those 9 are gone, paced (8 gaps of 1/4 s) over several chunks, and the rest remain
    part = real.result["targets"]["threads"]  # type: ignore[index]
    assert sorted(part["deleted_ids"]) == expected
    assert (part["deleted"], part["failed"], part["skipped"]) == (9, 0, {"active job": 1})
    assert (real.result["deleted"], real.result["skipped"], real.result["failed"]) == (9, 1, 0)  # type: ignore[index]
    assert not any(_exists(lambda t=t: beta.threads.retrieve(t)) for t in expected)
    assert all(_exists(lambda t=t: beta.threads.retrieve(t)) for t in sorted(set(threads) - set(expected)))
    assert real.finished_at is not None and real.started_at is not None
    assert real.finished_at - real.started_at >= 8 / 4 - 0.1
    assert any(e.type == "job.progress" and e.job_id == real.id for e in jobs.events(count=10_000))
    recorded = {t for t, _ in jobs.store.inventory.idle(Conversational.THREAD, time.time() + 1)}
    assert recorded == set(threads) - set(expected)


def test_store_sweep_deletes_only_stale_stores_this_system_created(
    jobs: Jobs,
    worker: Callable[..., WorkerProcess],
    api: openai.OpenAI,
    emulator: EmulatorHandle,
    redis_client: redis.Redis,
) -> None:
    # Given a stale store of ours, a stale store of someone else's, and a fresh store of ours
    worker()
    ours = managed_metadata()
    stale_ours = api.vector_stores.create(name="stale-ours", metadata=ours).id
    stale_theirs = api.vector_stores.create(name="stale-theirs").id
    fresh_ours = api.vector_stores.create(name="fresh-ours", metadata=ours).id
    for store in (stale_ours, fresh_ours):
        jobs.store.inventory.record_store(store)  # as indexing jobs record the stores they create
    for store in (stale_ours, stale_theirs):
        emulator.age(store, 3 * 24 * HOUR)

    # When the vector stores are swept with a one-day limit
    record = _sweep(jobs, targets=["vector_stores"], store_idle_s=24 * HOUR)

    # Then only the stale store of ours is gone, and the other stale one is named as not ours
    part = record.result["targets"]["vector_stores"]  # type: ignore[index]
    assert part["deleted_ids"] == [stale_ours]
    assert part["skipped_ids"] == {"not created here": [stale_theirs]}
    assert not _exists(lambda: api.vector_stores.retrieve(stale_ours))
    assert _exists(lambda: api.vector_stores.retrieve(stale_theirs))
    assert _exists(lambda: api.vector_stores.retrieve(fresh_ours))
    assert jobs.store.inventory.stores() == {fresh_ours}


def test_file_sweep_deletes_our_orphans_only_and_a_failed_delete_does_not_stop_it(
    jobs: Jobs,
    worker: Callable[..., WorkerProcess],
    api: openai.OpenAI,
    emulator: EmulatorHandle,
    redis_client: redis.Redis,
) -> None:
    # Given three old files of ours (one still in a store) and one old file of someone else's
    worker()
    orphan, kept, vanished, theirs = emulator.create_files(4, prefix="old")
    jobs.store.inventory.record_files([orphan, kept, vanished])
    store = api.vector_stores.create(name="holds-kept").id
    api.vector_stores.files.create(store, file_id=kept)
    for file_id in (orphan, kept, vanished, theirs):
        emulator.age(file_id, 2 * HOUR)
    # ...and one of ours that someone deleted behind the system's back
    api.files.delete(vanished)

    # When the files are swept
    record = _sweep(jobs, targets=["files"])

    # Then the orphan is gone, the file in a store and the file not ours stay, the vanished one is forgotten
    part = record.result["targets"]["files"]  # type: ignore[index]
    assert part["deleted_ids"] == [orphan]
    assert part["skipped_ids"] == {"in a vector store": [kept]}
    assert part["already_gone"] == 1
    assert not _exists(lambda: api.files.retrieve(orphan))
    assert _exists(lambda: api.files.retrieve(kept)) and _exists(lambda: api.files.retrieve(theirs))
    assert jobs.store.inventory.files() == {kept}
