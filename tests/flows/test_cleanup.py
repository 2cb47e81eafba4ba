"""Clean-up jobs end to end, in process (tests/harness.py): the inventory filled by real run jobs, sweeps
against the emulator over HTTP with the real client, the shared delete pace in Redis."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import openai
import pytest
from harness import Harness
from helpers import exists

from emulator.server import EmulatorHandle
from schemas.job import JobRecord, JobStatus
from tasks.assistants import beta
from worker.client import Jobs
from worker.store.inventory import Conversational, managed_metadata

HOUR = 3600.0
PACE = 10
"""Deletes a second in the thread sweep: 9 deletes take at least 0.8 s, more than one chunk."""


class _NoBroker:
    """A Celery stand-in that sends nothing: a job submitted through it stays queued, as one whose start
    message still waits in a long broker queue."""

    def send_task(self, *args: Any, **kwargs: Any) -> None:
        return None


def sweep(harness: Harness, **request: Any) -> JobRecord:
    """Run a clean-up job of ``request`` to its end; its record, which must be completed."""
    record = harness.submit_and_run({"kind": "cleanup", **request})
    assert record.status == JobStatus.COMPLETED, record
    assert record.result is not None
    return record


def recorded_threads(harness: Harness) -> set[str]:
    """Threads the inventory holds (idle since any time up to now)."""
    return {t for t, _ in harness.store.inventory.idle(Conversational.THREAD, time.time() + 1)}


def test_thread_sweep_deletes_exactly_the_idle_threads_without_a_job_and_a_dry_run_lists_them(
    make_harness: Callable[..., Harness], api: openai.OpenAI, emulator: EmulatorHandle
) -> None:
    # Given 30 threads created by run jobs (so recorded by the runs themselves), a pace of PACE deletes a
    # second and chunks of half a second (half the soft time limit)
    harness = make_harness(AJ_CLEANUP_DELETES_PER_S=str(PACE), AJ_TASK_SOFT_TIME_LIMIT="1")
    assistant = beta(api).assistants.create(model="gpt-4o")
    refs = harness.jobs.submit_many(
        [
            {
                "kind": "run",
                "backend": "assistants",
                "assistant_id": assistant.id,
                "messages": [{"role": "user", "content": f"hi {i}"}],
            }
            for i in range(30)
        ]
    )
    records = harness.run(*[ref.id for ref in refs])
    assert [r.status for r in records] == [JobStatus.COMPLETED] * 30
    threads = [r.remote["thread_id"] for r in records]
    assert recorded_threads(harness) == set(threads)
    assert not any(harness.store.threads.waiting(t) for t in threads), "a thread is still held"
    # ...of which 10 have been idle for two hours, and one of those has a job queued on it
    idle = threads[:10]
    for thread in idle:
        harness.store.inventory.touch({"thread_id": thread}, at=time.time() - 2 * HOUR)
    queued = Jobs(harness.settings, harness.store, celery=_NoBroker()).submit(  # type: ignore[arg-type]
        {
            "kind": "run",
            "backend": "assistants",
            "assistant_id": assistant.id,
            "thread_id": idle[0],
            "messages": [{"role": "user", "content": "later"}],
        }
    )
    assert harness.jobs.get(queued.id).status == JobStatus.QUEUED
    expected = sorted(idle[1:])

    # When a dry run sweeps threads idle for more than an hour
    dry = sweep(harness, targets=["threads"], dry_run=True, idle_s=HOUR)
    # Then it lists the other 9, names why it skips the tenth, and deletes nothing
    part = dry.result["targets"]["threads"]  # type: ignore[index]
    assert sorted(part["would_delete"]) == expected
    assert part["skipped"] == {"active job": 1}
    assert part["skipped_ids"] == {"active job": [idle[0]]}
    assert part["deleted"] == 0
    assert all(exists(lambda t=t: beta(api).threads.retrieve(t)) for t in threads)
    assert not [k for k in emulator.counters()["requests"] if k.startswith("DELETE")]

    # When the real sweep runs
    real = sweep(harness, targets=["threads"], idle_s=HOUR)
    # Then exactly those 9 are gone, one request each, paced (8 gaps) over several chunks, and the rest remain
    part = real.result["targets"]["threads"]  # type: ignore[index]
    assert sorted(part["deleted_ids"]) == expected
    assert (part["deleted"], part["failed"], part["skipped"]) == (9, 0, {"active job": 1})
    assert (real.result["deleted"], real.result["skipped"], real.result["failed"]) == (9, 1, 0)  # type: ignore[index]
    assert emulator.counters()["requests"]["DELETE /v1/threads/{thread_id}"] == 9
    assert not any(exists(lambda t=t: beta(api).threads.retrieve(t)) for t in expected)
    assert all(
        exists(lambda t=t: beta(api).threads.retrieve(t)) for t in sorted(set(threads) - set(expected))
    )
    assert real.finished_at is not None and real.started_at is not None
    assert real.finished_at - real.started_at >= 8 / PACE - 0.01
    assert any(e.type == "job.progress" and e.job_id == real.id for e in harness.jobs.events(count=10_000))
    assert recorded_threads(harness) == set(threads) - set(expected)


def test_store_sweep_deletes_only_stale_stores_this_system_created(
    harness: Harness, api: openai.OpenAI, emulator: EmulatorHandle
) -> None:
    # Given a stale store of ours, a stale store of someone else's, and a fresh store of ours
    ours = managed_metadata()
    stale_ours = api.vector_stores.create(name="stale-ours", metadata=ours).id
    stale_theirs = api.vector_stores.create(name="stale-theirs").id
    fresh_ours = api.vector_stores.create(name="fresh-ours", metadata=ours).id
    for store in (stale_ours, fresh_ours):
        harness.store.inventory.record_store(store)  # as indexing jobs record the stores they create
    for store in (stale_ours, stale_theirs):
        emulator.age(store, 3 * 24 * HOUR)

    # When the vector stores are swept with a one-day limit
    record = sweep(harness, targets=["vector_stores"], store_idle_s=24 * HOUR)

    # Then only the stale store of ours is gone, and the other stale one is named as not ours
    part = record.result["targets"]["vector_stores"]  # type: ignore[index]
    assert part["deleted_ids"] == [stale_ours]
    assert part["skipped_ids"] == {"not created here": [stale_theirs]}
    assert not exists(lambda: api.vector_stores.retrieve(stale_ours))
    assert exists(lambda: api.vector_stores.retrieve(stale_theirs))
    assert exists(lambda: api.vector_stores.retrieve(fresh_ours))
    assert harness.store.inventory.stores() == {fresh_ours}


def test_a_sweep_cancelled_between_chunks_stops_deleting_and_reports_what_it_deleted(
    make_harness: Callable[..., Harness], api: openai.OpenAI, emulator: EmulatorHandle
) -> None:
    # Given ten stale stores of ours, swept at PACE deletes a second in chunks of half a second
    harness = make_harness(AJ_CLEANUP_DELETES_PER_S=str(PACE), AJ_TASK_SOFT_TIME_LIMIT="1")
    stores = [api.vector_stores.create(name=f"stale-{i}", metadata=managed_metadata()).id for i in range(10)]
    for store in stores:
        harness.store.inventory.record_store(store)
        emulator.age(store, 3 * 24 * HOUR)
    ref = harness.jobs.submit({"kind": "cleanup", "targets": ["vector_stores"], "store_idle_s": 24 * HOUR})
    assert harness.worker.drain(limit=1) == 1  # the plan and the first chunk
    # When it is cancelled before its next chunk
    harness.jobs.cancel(ref.id)
    [record] = harness.run(ref.id)
    # Then it ends cancelled, having deleted only what its first chunk did, and says how many
    deletes = emulator.counters()["requests"]["DELETE /v1/vector_stores/{vector_store_id}"]
    assert record.status == JobStatus.CANCELLED
    assert 0 < deletes < 10
    assert record.result is not None and record.result["targets"]["vector_stores"]["deleted"] == deletes
    assert sum(exists(lambda s=s: api.vector_stores.retrieve(s)) for s in stores) == 10 - deletes


def test_file_sweep_deletes_our_orphans_only_and_a_failed_delete_does_not_stop_it(
    harness: Harness, api: openai.OpenAI, emulator: EmulatorHandle
) -> None:
    # Given four old files of ours (one still in a store) and one old file of someone else's
    stubborn, orphan, kept, vanished, theirs = emulator.create_files(5, prefix="old")
    harness.store.inventory.record_files([stubborn, orphan, kept, vanished])
    store = api.vector_stores.create(name="holds-kept").id
    api.vector_stores.files.create(store, file_id=kept)
    for file_id in (stubborn, orphan, kept, vanished, theirs):
        emulator.age(file_id, 2 * HOUR)
    # ...one of ours that someone deleted behind the system's back, and one the API fails to delete
    api.files.delete(vanished)
    emulator.set_faults(rate_500=1.0, paths=[f"/v1/files/{stubborn}"], methods=["DELETE"])

    # When the files are swept
    record = sweep(harness, targets=["files"])

    # Then the orphan is gone, the failed delete is named, the file in a store and the file not ours stay,
    # and the vanished one is forgotten
    part = record.result["targets"]["files"]  # type: ignore[index]
    assert part["deleted_ids"] == [orphan]
    assert (part["failed"], [e["id"] for e in part["errors"]]) == (1, [stubborn])
    assert part["skipped_ids"] == {"in a vector store": [kept]}
    assert part["already_gone"] == 1
    emulator.clear_faults()
    assert not exists(lambda: api.files.retrieve(orphan))
    assert all(exists(lambda f=f: api.files.retrieve(f)) for f in (stubborn, kept, theirs))
    assert harness.store.inventory.files() == {stubborn, kept}


@pytest.mark.parametrize("fault", ["rate_429", "rate_503"])
def test_a_listing_that_fails_for_a_moment_is_planned_again_not_reported_failed(
    harness: Harness, emulator: EmulatorHandle, fault: str
) -> None:
    # Given an API whose store listing answers 429 (with Retry-After) or 503 for a while
    emulator.set_faults(**{fault: 1.0}, retry_after_s=1.0, paths=["/v1/vector_stores"], methods=["GET"])
    ref = harness.jobs.submit({"kind": "cleanup", "targets": ["vector_stores"], "dry_run": True})
    harness.run(until=lambda: emulator.counters()["requests"].get("GET /v1/vector_stores", 0) >= 3)
    assert not harness.jobs.get(ref.id).status.ended  # it waits; it does not give up on the target
    # When the API recovers
    emulator.clear_faults()
    [record] = harness.run(ref.id)
    # Then the sweep completes with a plan for the target, not an error for it
    assert record.status == JobStatus.COMPLETED and record.result is not None
    assert "error" not in record.result["targets"]["vector_stores"]
