"""Indexing jobs with real worker processes: only what processes show. A worker SIGKILLed half-way
through its uploads, and the CLI run as a subprocess. Everything else about indexing is in
tests/flows/test_indexing.py, in process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from helpers import WorkerProcess, wait_for, write_files

from emulator.server import EmulatorHandle
from schemas.job import JobStatus
from worker.client import Jobs

StartWorker = Callable[..., WorkerProcess]


@pytest.mark.slow
def test_local_files_are_uploaded_once_even_when_the_worker_dies_half_way(
    jobs: Jobs, worker: StartWorker, emulator: EmulatorHandle, tmp_path: Path
) -> None:
    # Given 50 local files and slow uploads
    paths = write_files(tmp_path / "docs", 50)
    emulator.set_faults(latency_ms=250, paths=["/v1/files"], methods=["POST"])
    first = worker(extra_env={"AJ_UPLOAD_CONCURRENCY": "4"})
    ref = jobs.submit({"kind": "index", "new_store": {"name": "test"}, "paths": paths})

    # When the worker is killed half-way through the uploads and another takes over
    wait_for(lambda: len(jobs.store.uploads.recorded(ref.id)) >= 15, 30, "uploads to start")
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
