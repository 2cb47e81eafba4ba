"""Indexing by path across hosts, as a producer meets it: paths made absolute and checked before submit,
each bad one named; upload mode, where the producer uploads and the workers never see a file; files
uploaded for a submit that then failed never leaked; and worker-side uploads announced as they go."""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import openai
import pytest
import redis
from harness import Harness
from helpers import write_files, written_keys

from emulator.server import EmulatorHandle
from schemas.job import JobStatus
from worker import constants as c
from worker.client import Jobs
from worker.paths import BadPaths


def index(**fields: Any) -> dict[str, Any]:
    """An index request into a new store."""
    return {"kind": "index", "new_store": {"name": "docs"}, **fields}


def test_a_relative_path_is_submitted_absolute_and_bad_paths_are_refused_at_submit_naming_each(
    harness: Harness, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, redis_client: redis.Redis
) -> None:
    # Given a producer working in a directory with docs/a.md, a program and no docs/missing.md
    monkeypatch.chdir(tmp_path)
    write_files(tmp_path / "docs", 1, prefix="a")
    (tmp_path / "docs" / "setup.exe").write_bytes(b"MZ")

    # When it submits the good file by a relative path
    ref = harness.jobs.submit(index(paths=["docs/a-000.txt"]))

    # Then the job names it by its absolute path, which a worker anywhere resolves the same way
    assert harness.jobs.get(ref.id).request["paths"] == [str(tmp_path / "docs" / "a-000.txt")]

    # When it submits a missing file and a program beside the good one
    keys_before = written_keys(redis_client)
    with pytest.raises(BadPaths) as refused:
        harness.jobs.submit(index(paths=["docs/a-000.txt", "docs/missing.md", "docs/setup.exe"]))

    # Then the submit is refused naming each bad path (as given and absolute) with why, and nothing is written
    message = str(refused.value)
    assert f"docs/missing.md ({tmp_path}/docs/missing.md): missing" in message
    assert f"docs/setup.exe ({tmp_path}/docs/setup.exe): unsupported extension .exe" in message
    assert "a-000" not in message
    assert written_keys(redis_client) == keys_before


def test_paths_only_the_workers_see_must_be_absolute(jobs: Jobs, tmp_path: Path) -> None:
    # Given a producer whose files are only where the workers run
    remote = Jobs(jobs.settings, jobs.store, jobs.celery, check_paths=False)

    # When it names a relative path, it is refused: nothing could tell what it is relative to
    expected = "docs/a.md: a relative path; give the absolute path the workers see"
    with pytest.raises(BadPaths, match=re.escape(expected)):
        remote.submit(index(paths=["docs/a.md"]))
    # ...and an absolute path it cannot see is accepted as it is: the worker looks at it
    ref = remote.submit(index(paths=["/srv/shared/a.md"]))
    assert remote.get(ref.id).request["paths"] == ["/srv/shared/a.md"]


def test_upload_mode_indexes_files_no_worker_can_see(
    harness: Harness, emulator: EmulatorHandle, tmp_path: Path
) -> None:
    # Given ten files on the producer's machine only
    paths = write_files(tmp_path / "mine", 10)
    seen: list[tuple[int, int]] = []

    # When the producer uploads them itself and submits
    ref = harness.jobs.submit(
        index(paths=paths), upload=True, on_upload=lambda n, total, _: seen.append((n, total))
    )
    # ...and the files are gone before any worker looks
    shutil.rmtree(tmp_path / "mine")
    [record] = harness.run(ref.id)

    # Then the job indexed all ten from their file ids, each uploaded once, the bar moving to 10 of 10
    assert record.status == JobStatus.COMPLETED, record.error
    assert not record.request.get("paths") and len(record.request["file_ids"]) == 10
    result = record.index_result()
    assert result is not None and result.file_counts.completed == 10 and result.failed == []
    assert result.uploaded == 10
    assert emulator.counters()["uploads_per_filename"] == {os.path.basename(p): 1 for p in paths}
    assert seen[-1] == (10, 10) and len(seen) == 10
    # ...and each file is recorded for the clean-up, with the path it came from
    assert set(record.request["file_ids"]) <= harness.store.inventory.files()
    assert sorted(harness.store.uploads.recorded(ref.id)) == sorted(paths)


def test_files_uploaded_for_a_submit_that_failed_are_deleted_or_left_to_the_files_sweep(
    harness: Harness,
    emulator: EmulatorHandle,
    api: openai.OpenAI,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given a producer whose Redis write fails after the uploads
    paths = write_files(tmp_path, 3)

    def refuse(*_: Any, **__: Any) -> None:
        raise redis.ConnectionError("Redis went away")

    monkeypatch.setattr(harness.store.jobs, "submit", refuse)

    # When it submits in upload mode
    with pytest.raises(redis.ConnectionError):
        harness.jobs.submit(index(paths=paths), upload=True)

    # Then the three uploads were deleted again and forgotten: nothing is left behind
    assert emulator.counters()["uploads_per_filename"] == {os.path.basename(p): 1 for p in paths}
    assert [f.id for f in api.files.list()] == []
    assert harness.store.inventory.files() == set()

    # When the deletes fail as well (the API answers 500 to them)
    emulator.set_faults(rate_500=1.0, paths=["/v1/files/"], methods=["DELETE"])
    with pytest.raises(redis.ConnectionError):
        harness.jobs.submit(index(paths=paths), upload=True)

    # Then the files stay in the inventory, where the files sweep finds them
    left = {f.id for f in api.files.list()}
    assert len(left) == 3 and harness.store.inventory.files() == left


def test_worker_side_uploads_are_announced_as_they_go(
    make_harness: Callable[..., Harness], tmp_path: Path
) -> None:
    # Given a worker that uploads one file at a time, and twelve files it can see
    harness = make_harness(AJ_UPLOAD_CONCURRENCY="1")
    paths = write_files(tmp_path, 12)

    # When an indexing job names them
    [record] = harness.run(harness.jobs.submit(index(paths=paths)).id)

    # Then its uploads were announced, counting up to twelve of twelve, before its indexing progress
    assert record.status == JobStatus.COMPLETED, record.error
    events = [e for e in harness.jobs.events(count=10_000) if e.job_id == record.id]
    uploaded = [e.data for e in events if e.type == c.UPLOADED_EVENT]
    assert uploaded and uploaded[-1] == {"uploaded": 12, "total": 12}
    counts = [u["uploaded"] for u in uploaded]
    assert counts == sorted(counts)
    types = [e.type for e in events]
    assert types.index(c.UPLOADED_EVENT) < types.index("job.progress")
