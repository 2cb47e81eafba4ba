"""Indexing jobs end to end: real worker processes, the emulator over HTTP, the real openai client."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import openai
import pytest
from helpers import WorkerProcess

from emulator.server import EmulatorHandle
from schemas.job import JobStatus
from worker.client import Jobs

BATCH_CREATE = "POST /v1/vector_stores/{vector_store_id}/file_batches"
BATCH_CANCEL = "POST /v1/vector_stores/{vector_store_id}/file_batches/{batch_id}/cancel"

StartWorker = Callable[..., WorkerProcess]


@pytest.fixture
def api(emulator: EmulatorHandle) -> Iterator[openai.OpenAI]:
    client = openai.OpenAI(base_url=emulator.base_url, api_key="sk-test", max_retries=0)
    yield client
    client.close()


def index(**fields: Any) -> dict[str, Any]:
    """An index request into a new store unless the fields name one."""
    target = {} if "vector_store_id" in fields else {"new_store": {"name": "test"}}
    return {"kind": "index", **target, **fields}


def progress_events(jobs: Jobs, job_id: str) -> list[dict[str, Any]]:
    """The job's `job.progress` events, oldest first."""
    found, last = [], None
    while batch := jobs.events(last, count=1000):
        last = batch[-1].stream_id
        found += [e.data for e in batch if e.job_id == job_id and e.type == "job.progress"]
    return found


def write_files(folder: Path, count: int, prefix: str = "doc") -> list[str]:
    """``count`` small text files; their paths."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        path = folder / f"{prefix}-{i:03d}.txt"
        path.write_text(f"document {i}: " + "lorem ipsum " * (i + 1))
        paths.append(str(path))
    return paths


def test_five_thousand_files_go_in_three_batches_with_progress_that_never_goes_back(
    jobs: Jobs, worker: StartWorker, emulator: EmulatorHandle
) -> None:
    # Given 5,000 uploaded files that take up to two seconds each to index
    emulator.update_profile(file_index_duration={"kind": "uniform", "min": 0.2, "max": 2.0})
    file_ids = emulator.create_files(5000)
    worker()

    # When they are indexed into one new store
    ref = jobs.submit(index(file_ids=file_ids))
    record = jobs.wait(ref.id, timeout=60)

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
    events = progress_events(jobs, ref.id)
    assert len(events) >= 2
    done = [(e["completed"], e["completed"] + e["failed"]) for e in events]
    assert all(a[0] <= b[0] and a[1] <= b[1] for a, b in itertools.pairwise(done)), done
    assert all(e["completed"] + e["failed"] + e["in_progress"] <= e["total"] == 5000 for e in events)


def test_local_files_are_uploaded_once_even_when_the_worker_dies_half_way(
    jobs: Jobs, worker: StartWorker, emulator: EmulatorHandle, tmp_path: Path
) -> None:
    # Given 50 local files and slow uploads
    paths = write_files(tmp_path / "docs", 50)
    emulator.set_faults(latency_ms=250, paths=["/v1/files"], methods=["POST"])
    first = worker(extra_env={"AJ_UPLOAD_CONCURRENCY": "4"})
    ref = jobs.submit(index(paths=paths))

    # When the worker is killed half-way through the uploads and another takes over
    deadline = time.monotonic() + 30
    while len(jobs.store.uploads.recorded(ref.id)) < 15:
        assert time.monotonic() < deadline, "uploads did not start"
        time.sleep(0.05)
    first.kill()
    assert len(jobs.store.uploads.recorded(ref.id)) < 50
    worker(name="second")
    record = jobs.wait(ref.id, timeout=60)

    # Then every file was indexed and none was uploaded twice
    assert record.status == JobStatus.COMPLETED, record.error
    result = record.result or {}
    assert result["file_counts"]["completed"] == 50
    assert result["uploaded"] == 50
    per_name = emulator.counters()["uploads_per_filename"]
    assert sorted(per_name) == sorted(os.path.basename(p) for p in paths)
    assert set(per_name.values()) == {1}, {k: v for k, v in per_name.items() if v != 1}


def test_failed_files_are_named_with_their_errors_and_retried(
    jobs: Jobs, worker: StartWorker, emulator: EmulatorHandle
) -> None:
    # Given an API on which 5% of files fail to index
    emulator.update_profile(p_file_failed=0.05)
    worker()

    # When 400 files are indexed without retry, and 400 others with one retry round
    plain = jobs.submit(index(file_ids=emulator.create_files(400, prefix="plain"), retry_failed=0))
    retried = jobs.submit(index(file_ids=emulator.create_files(400, prefix="retried"), retry_failed=1))
    without, with_retry = jobs.wait(plain.id, timeout=60), jobs.wait(retried.id, timeout=60)

    # Then without retry the job fails, partial, naming every failed file with its error
    assert without.status == JobStatus.FAILED
    assert without.error is not None and without.error.code == "files_failed"
    result = without.result or {}
    assert result["partial"] is True
    assert len(result["failed"]) == result["file_counts"]["failed"] > 0
    assert all(f["last_error"]["code"] and f["last_error"]["message"] for f in result["failed"])
    assert result["recovered"] == []

    # And with retry the failed files went into a new batch and the recovered ones are reported
    result = with_retry.result or {}
    rounds = [b["round"] for b in result["batches"]]
    assert rounds.count(1) == 1, rounds
    first_failed = result["batches"][0]["file_counts"]["failed"]
    assert first_failed > 0
    assert len(result["recovered"]) > 0
    assert len(result["recovered"]) + len(result["failed"]) == first_failed
    assert result["file_counts"]["completed"] == 400 - len(result["failed"])
    assert with_retry.status == (JobStatus.FAILED if result["failed"] else JobStatus.COMPLETED)


def test_bad_paths_are_refused_in_one_error_with_nothing_uploaded(
    jobs: Jobs, worker: StartWorker, emulator: EmulatorHandle, tmp_path: Path
) -> None:
    # Given one good file, a missing one, a program and one over the 512 MB limit (sparse: no disk used)
    good = write_files(tmp_path, 1)[0]
    program = tmp_path / "setup.exe"
    program.write_bytes(b"MZ")
    huge = tmp_path / "huge.pdf"
    with huge.open("wb") as handle:
        handle.truncate(513 * 1024 * 1024)
    missing = str(tmp_path / "missing.md")
    worker()

    # When they are submitted together
    record = jobs.wait(jobs.submit(index(paths=[good, missing, str(program), str(huge)])).id, timeout=30)

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
    skipping = jobs.submit(index(paths=[good, missing, str(program), str(huge)], skip_bad_paths=True))
    record = jobs.wait(skipping.id, timeout=30)
    assert record.status == JobStatus.COMPLETED, record.error
    result = record.result or {}
    assert [s["path"] for s in result["skipped_paths"]] == [missing, str(program), str(huge)]
    assert result["file_counts"]["completed"] == 1
    assert emulator.counters()["uploads_per_filename"] == {os.path.basename(good): 1}


def test_a_deadline_ends_the_job_timed_out_with_its_batches_cancelled(
    jobs: Jobs, worker: StartWorker, emulator: EmulatorHandle, api: openai.OpenAI
) -> None:
    # Given files that take a minute to index
    emulator.update_profile(file_index_duration={"kind": "fixed", "value": 60.0})
    worker()

    # When a job with a two-second deadline indexes them
    ref = jobs.submit(index(file_ids=emulator.create_files(30), deadline_s=2))
    record = jobs.wait(ref.id, timeout=30)

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
    jobs: Jobs, worker: StartWorker, emulator: EmulatorHandle, api: openai.OpenAI
) -> None:
    # Given a running job whose files take a minute to index
    emulator.update_profile(file_index_duration={"kind": "fixed", "value": 60.0})
    worker()
    ref = jobs.submit(index(file_ids=emulator.create_files(10)))
    wait_for(lambda: jobs.get(ref.id).remote.get("batches"), 15)

    # When it is cancelled
    jobs.cancel(ref.id)
    record = jobs.wait(ref.id, timeout=15)

    # Then it ends cancelled and so does its batch
    assert record.status == JobStatus.CANCELLED
    assert emulator.counters()["requests"][BATCH_CANCEL] == 1
    store = api.vector_stores.retrieve((record.result or {})["vector_store_id"])
    assert store.file_counts.cancelled == 10


def wait_for(check: Callable[[], Any], timeout: float) -> Any:
    """Poll ``check`` until it returns something truthy."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError("timed out waiting")


def test_the_cli_submits_an_index_job_and_waits_for_it(
    worker: StartWorker, emulator: EmulatorHandle, env: dict[str, str], tmp_path: Path
) -> None:
    # Given a worker, two uploaded files and one local file
    worker()
    file_ids = emulator.create_files(2)
    path = write_files(tmp_path, 1)[0]

    # When `ajobs submit index --new-store NAME --file-id ... PATH --wait` runs
    args = ["submit", "index", "--new-store", "cli", *(f"--file-id={i}" for i in file_ids), path, "--wait"]
    cli = [sys.executable, "-c", "from worker.cli import main; main()", *args, "--timeout", "30", "--json"]
    outcome = subprocess.run(cli, env=env, capture_output=True, text=True, timeout=60, check=False)

    # Then it exits 0 with the completed job, three files indexed
    assert outcome.returncode == 0, outcome.stderr
    record = json.loads(outcome.stdout)
    assert record["status"] == "completed"
    assert record["result"]["file_counts"]["completed"] == 3
