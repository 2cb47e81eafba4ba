"""Uploads of an indexing job against the emulator: recorded as they return, and orphans of a killed
worker adopted instead of uploaded again."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import openai
import pytest
import redis

from emulator.server import EmulatorHandle
from tasks.index_uploads import Uploader
from worker.store import Store


@pytest.fixture
def api(emulator: EmulatorHandle) -> Iterator[openai.OpenAI]:
    client = openai.OpenAI(base_url=emulator.base_url, api_key="sk-test", max_retries=0)
    yield client
    client.close()


@pytest.fixture
def store(redis_client: redis.Redis) -> Store:
    return Store.on(redis_client, result_ttl=60, idempotency_ttl=60, events_maxlen=1000)


def uploader(api: openai.OpenAI, store: Store, job_id: str = "job_u") -> Uploader:
    return Uploader(api, store.uploads, store.inventory, job_id, concurrency=4, request_timeout=10)


def files(folder: Path, count: int) -> list[str]:
    paths = []
    for i in range(count):
        path = folder / f"note-{i}.txt"
        path.write_text(f"note {i}")
        paths.append(str(path))
    return paths


def test_each_path_is_uploaded_once_and_recorded(
    api: openai.OpenAI, store: Store, emulator: EmulatorHandle, tmp_path: Path
) -> None:
    paths = files(tmp_path, 12)
    chunk = uploader(api, store).run(paths, budget_s=10)
    again = uploader(api, store).run(paths, budget_s=10)
    assert (chunk.uploaded, chunk.remaining, again.uploaded) == (12, 0, 0)
    ids = store.uploads.recorded("job_u")
    assert sorted(ids) == sorted(paths)
    assert store.inventory.files() == set(ids.values())
    assert set(emulator.counters()["uploads_per_filename"].values()) == {1}


def test_an_upload_a_killed_worker_left_unrecorded_is_adopted_not_repeated(
    api: openai.OpenAI, store: Store, emulator: EmulatorHandle, tmp_path: Path
) -> None:
    # Given a worker killed after the server stored a file but before its id was recorded
    path = files(tmp_path, 1)[0]
    store.uploads.begin("job_u", path)
    with open(path, "rb") as handle:
        stored = api.files.create(file=("note-0.txt", handle), purpose="assistants")
    # And an identical file another job uploaded and recorded, which must not be taken
    with open(path, "rb") as handle:
        other = api.files.create(file=("note-0.txt", handle), purpose="assistants")
    store.inventory.record_files([other.id])

    # When the retried task runs
    chunk = uploader(api, store).run([path], budget_s=10)

    # Then the stored file is adopted and nothing is uploaded again
    assert (chunk.adopted, chunk.uploaded) == (1, 0)
    assert store.uploads.recorded("job_u") == {path: stored.id}
    assert emulator.counters()["uploads_per_filename"] == {"note-0.txt": 2}


def test_a_retryable_upload_error_is_left_for_a_later_retry(
    api: openai.OpenAI, store: Store, emulator: EmulatorHandle, tmp_path: Path
) -> None:
    path = files(tmp_path, 1)[0]
    emulator.set_faults(rate_500=1.0, paths=["/v1/files"])
    chunk = uploader(api, store).run([path], budget_s=10)
    assert chunk.retry_error is not None and chunk.retry_error.retryable
    assert chunk.remaining == 1
    # A retryable failure leaves no note behind: the server answered, so nothing was stored.
    assert store.uploads.notes("job_u") == {}
