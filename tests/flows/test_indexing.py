"""Indexing jobs end to end, in process (tests/harness.py): uploads, file batches, progress, failed files
and their retry, bad paths, deadline and cancel, against the emulator over HTTP with the real client."""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import openai
import pytest
from harness import Harness
from helpers import soft_limit_after, write_files
from openai.resources.vector_stores.file_batches import FileBatches

from emulator.server import EmulatorHandle
from schemas.job import JobStatus

BATCH_CREATE = "POST /v1/vector_stores/{vector_store_id}/file_batches"
BATCH_CANCEL = "POST /v1/vector_stores/{vector_store_id}/file_batches/{batch_id}/cancel"


def index(**fields: Any) -> dict[str, Any]:
    """An index request into a new store unless the fields name one."""
    target = {} if "vector_store_id" in fields else {"new_store": {"name": "test"}}
    return {"kind": "index", **target, **fields}


def progress_events(harness: Harness, job_id: str) -> list[dict[str, Any]]:
    """The job's `job.progress` events, oldest first."""
    found, last = [], None
    while batch := harness.jobs.events(last, count=1000):
        last = batch[-1].stream_id
        found += [e.data for e in batch if e.job_id == job_id and e.type == "job.progress"]
    return found


def test_five_thousand_files_go_in_three_batches_with_progress_that_never_goes_back(
    harness: Harness, emulator: EmulatorHandle
) -> None:
    # Given 5,000 uploaded files that take up to two seconds each to index
    emulator.update_profile(file_index_duration={"kind": "uniform", "min": 0.2, "max": 2.0})
    file_ids = emulator.create_files(5000)

    # When they are indexed into one new store
    record = harness.submit_and_run(index(file_ids=file_ids))

    # Then three batches of 2,000 + 2,000 + 1,000 were created and every file indexed
    assert record.status == JobStatus.COMPLETED, record.error
    result = record.result or {}
    assert [b["file_counts"]["total"] for b in result["batches"]] == [2000, 2000, 1000]
    assert emulator.counters()["requests"][BATCH_CREATE] == 3
    assert result["file_counts"]["completed"] == 5000
    assert result["file_counts"]["total"] == 5000
    assert result["failed"] == [] and result["partial"] is False
    assert record.progress is not None and record.progress.completed == 5000
    # And the progress events never went backwards and added up
    events = progress_events(harness, record.id)
    assert len(events) >= 2
    done = [(e["completed"], e["completed"] + e["failed"]) for e in events]
    assert all(a[0] <= b[0] and a[1] <= b[1] for a, b in itertools.pairwise(done)), done
    assert all(e["completed"] + e["failed"] + e["in_progress"] <= e["total"] == 5000 for e in events)


def test_a_prepare_cut_off_by_its_soft_time_limit_after_a_batch_create_makes_no_batch_twice(
    make_harness: Callable[..., Harness], emulator: EmulatorHandle, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given 5,000 files (three batches), and time limits whose hold's grace outlasts a loaded host
    harness = make_harness(AJ_TASK_SOFT_TIME_LIMIT="6", AJ_TASK_TIME_LIMIT="60", AJ_VISIBILITY_TIMEOUT="70")
    file_ids = emulator.create_files(5000)
    # When the soft time limit strikes as the server makes the second batch, and the step is retried
    with soft_limit_after(monkeypatch, FileBatches, "create", nth=2) as interrupted:
        record = harness.submit_and_run(index(file_ids=file_ids))
    # Then that batch was recorded before the step gave way: three batches in all, every file indexed once
    assert interrupted and record.status == JobStatus.COMPLETED, record.error
    result = record.result or {}
    assert [b["file_counts"]["total"] for b in result["batches"]] == [2000, 2000, 1000]
    assert emulator.counters()["requests"][BATCH_CREATE] == 3


def test_local_files_are_uploaded_once_each_and_recorded_with_their_paths(
    harness: Harness, emulator: EmulatorHandle, tmp_path: Path
) -> None:
    # Given 30 local files
    paths = write_files(tmp_path / "docs", 30)

    # When they are indexed
    record = harness.submit_and_run(index(paths=paths))

    # Then each was uploaded exactly once and indexed
    assert record.status == JobStatus.COMPLETED, record.error
    result = record.result or {}
    assert result["uploaded"] == 30 and result["file_counts"]["completed"] == 30
    assert emulator.counters()["uploads_per_filename"] == {os.path.basename(p): 1 for p in paths}
    assert sorted(harness.store.uploads.recorded(record.id)) == sorted(paths)


def test_an_indexing_job_whose_poll_was_lost_is_redriven_without_a_second_batch(
    harness: Harness, emulator: EmulatorHandle
) -> None:
    # Given an indexing job whose batch is created and whose poll entry was then lost
    ref = harness.jobs.submit(index(file_ids=emulator.create_files(20)))
    harness.run(ref.id, until=lambda: bool(harness.jobs.get(ref.id).remote.get("prepared")))
    harness.store.schedule.remove(ref.id)
    # When the watchdog looks once the job has had no owner for a while
    harness.clock.advance(harness.settings.ownerless_after + 1)
    assert harness.watchdog.run().redriven == [ref.id]
    # Then the job is polled again and completes, with its one batch and every file indexed
    [record] = harness.run(ref.id)
    assert record.status == JobStatus.COMPLETED, record.error
    assert (record.redrives, (record.result or {})["file_counts"]["completed"]) == (1, 20)
    assert emulator.counters()["requests"][BATCH_CREATE] == 1


def test_an_upload_that_keeps_failing_fails_the_job_once_its_retries_are_spent(
    make_harness: Callable[..., Harness], emulator: EmulatorHandle, tmp_path: Path
) -> None:
    # Given a worker allowed two retries, and an API that answers every upload 503
    harness = make_harness(AJ_MAX_RETRIES="2")
    emulator.set_faults(rate_503=1.0, paths=["/v1/files"], methods=["POST"])
    # When one local file is indexed
    record = harness.submit_and_run(index(paths=write_files(tmp_path, 1)))
    # Then it was tried exactly three times, and the job failed retryable, dead-lettered, with no batch
    requests = emulator.counters()["requests"]
    assert requests["POST /v1/files"] == 3 and BATCH_CREATE not in requests
    assert record.status == JobStatus.FAILED and record.error is not None and record.error.retryable
    assert [r.id for r in harness.jobs.dead()] == [record.id]


def test_failed_files_are_named_with_their_errors_and_retried(
    harness: Harness, emulator: EmulatorHandle
) -> None:
    # Given an API on which 5% of files fail to index
    emulator.update_profile(p_file_failed=0.05)

    # When 400 files are indexed without retry, and 400 others with one retry round
    plain = harness.jobs.submit(index(file_ids=emulator.create_files(400, prefix="plain"), retry_failed=0))
    retried = harness.jobs.submit(
        index(file_ids=emulator.create_files(400, prefix="retried"), retry_failed=1)
    )
    without, with_retry = harness.run(plain.id, retried.id)

    # Then without retry the job fails, partial, naming every failed file with its error
    assert without.status == JobStatus.FAILED
    assert without.error is not None and without.error.code == "files_failed"
    result = without.result or {}
    assert result["partial"] is True
    assert len(result["failed"]) == result["file_counts"]["failed"] > 0
    assert all(f["last_error"]["code"] and f["last_error"]["message"] for f in result["failed"])
    assert result["recovered"] == []

    # And with retry the failed files went into one new batch and the recovered ones are reported
    result = with_retry.result or {}
    rounds = [b["round"] for b in result["batches"]]
    assert rounds == [0, 1], rounds
    first_failed = result["batches"][0]["file_counts"]["failed"]
    assert first_failed > 0
    assert len(result["recovered"]) > 0
    assert len(result["recovered"]) + len(result["failed"]) == first_failed
    assert result["file_counts"]["completed"] == 400 - len(result["failed"])
    assert with_retry.status == (JobStatus.FAILED if result["failed"] else JobStatus.COMPLETED)


def test_bad_paths_are_refused_in_one_error_with_nothing_uploaded(
    harness: Harness, emulator: EmulatorHandle, tmp_path: Path
) -> None:
    # Given one good file, a missing one, a program and one over the 512 MB limit (sparse: no disk used)
    good = write_files(tmp_path, 1)[0]
    program = tmp_path / "setup.exe"
    program.write_bytes(b"MZ")
    huge = tmp_path / "huge.pdf"
    with huge.open("wb") as handle:
        handle.truncate(513 * 1024 * 1024)
    missing = str(tmp_path / "missing.md")
    # ...named by a producer that does not look at them (they are where the workers run; a producer that
    # has them refuses bad ones at submit: tests/flows/test_producer_paths.py)
    harness.jobs.check_paths = False

    # When they are submitted together
    record = harness.submit_and_run(index(paths=[good, missing, str(program), str(huge)]))

    # Then the job fails at once naming each bad path and why, and nothing was uploaded
    assert record.status == JobStatus.FAILED
    assert record.error is not None and record.error.code == "bad_paths"
    message = record.error.message
    assert f"{missing}: missing" in message
    assert f"{program}: unsupported extension .exe" in message
    assert f"{huge}: larger than 512 MiB" in message
    assert good not in message
    assert emulator.counters()["uploads_per_filename"] == {}

    # And with skip_bad_paths the good file is indexed and the bad ones named in the result
    record = harness.submit_and_run(
        index(paths=[good, missing, str(program), str(huge)], skip_bad_paths=True)
    )
    assert record.status == JobStatus.COMPLETED, record.error
    result = record.result or {}
    assert [s["path"] for s in result["skipped_paths"]] == [missing, str(program), str(huge)]
    assert result["file_counts"]["completed"] == 1
    assert emulator.counters()["uploads_per_filename"] == {os.path.basename(good): 1}


def test_a_deadline_ends_the_job_timed_out_with_its_batches_cancelled(
    harness: Harness, emulator: EmulatorHandle, api: openai.OpenAI
) -> None:
    # Given files that take a minute to index
    emulator.update_profile(file_index_duration={"kind": "fixed", "value": 60.0})

    # When a job with a two-second deadline indexes them
    record = harness.submit_and_run(index(file_ids=emulator.create_files(30), deadline_s=2))

    # Then it ends timed_out and its open batch was cancelled
    assert record.status == JobStatus.TIMED_OUT
    assert record.error is not None and record.error.code == "deadline_exceeded"
    result = record.result or {}
    assert len(result["cancelled_batches"]) == 1
    batch = api.vector_stores.file_batches.retrieve(
        result["cancelled_batches"][0], vector_store_id=result["vector_store_id"]
    )
    assert batch.status == "cancelled"


def test_cancel_cancels_the_open_batches(
    harness: Harness, emulator: EmulatorHandle, api: openai.OpenAI
) -> None:
    # Given a running job whose files take a minute to index
    emulator.update_profile(file_index_duration={"kind": "fixed", "value": 60.0})
    ref = harness.jobs.submit(index(file_ids=emulator.create_files(10)))
    harness.run(ref.id, until=lambda: bool(harness.jobs.get(ref.id).remote.get("batches")))

    # When it is cancelled
    harness.jobs.cancel(ref.id)
    [record] = harness.run(ref.id)

    # Then it ends cancelled and so does its batch, with one cancel request
    assert record.status == JobStatus.CANCELLED
    assert emulator.counters()["requests"][BATCH_CANCEL] == 1
    store = api.vector_stores.retrieve((record.result or {})["vector_store_id"])
    assert store.file_counts.cancelled == 10
