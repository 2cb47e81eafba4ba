"""What an indexing job uploaded: ``path -> file id`` as each upload returns, and notes of uploads in
flight, so a retried task uploads only what is left and adopts what a killed worker stored unrecorded."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any, cast

import redis

from worker.store import keys
from worker.store.codec import text
from worker.store.inventory import Inventory


class Uploads:
    """The upload record of indexing jobs; everything kept for ``ttl_s`` (the record's retention)."""

    def __init__(self, client: redis.Redis, ttl_s: int):
        self.redis = client
        self.ttl_s = ttl_s

    def recorded(self, job_id: str) -> dict[str, str]:
        """The paths this job has uploaded, with their file ids."""
        raw = self.redis.hgetall(keys.UPLOADS.format(job_id=job_id))
        return {text(k): text(v) for k, v in raw.items()}

    def file_ids(self, job_ids: list[str]) -> set[str]:
        """Every file id these jobs have uploaded so far."""
        pipe = self.redis.pipeline(transaction=False)
        for job_id in job_ids:
            pipe.hvals(keys.UPLOADS.format(job_id=job_id))
        return {text(f) for values in pipe.execute() for f in values}

    def begin(self, job_id: str, path: str) -> None:
        """Note that an upload of ``path`` starts now (left behind only if the worker dies meanwhile)."""
        key = keys.UPLOADING.format(job_id=job_id)
        pipe = self.redis.pipeline(transaction=False)
        pipe.hset(key, path, time.time())
        pipe.expire(key, self.ttl_s)
        pipe.execute()

    def abandon(self, job_id: str, path: str) -> None:
        """Drop the note of an upload that certainly stored nothing (the server refused it)."""
        self.redis.hdel(keys.UPLOADING.format(job_id=job_id), path)

    def record(self, job_id: str, ids: Mapping[str, str]) -> None:
        """Record uploaded ``path -> file id`` pairs, the files in the inventory, and drop their notes,
        in one transaction."""
        pipe = self.redis.pipeline(transaction=True)
        record_into(pipe, job_id, ids, self.ttl_s)
        pipe.execute()

    def notes(self, job_id: str) -> dict[str, float]:
        """Uploads of this job that began and never returned: ``path -> unix time begun``."""
        raw = self.redis.hgetall(keys.UPLOADING.format(job_id=job_id))
        return {text(k): float(v) for k, v in raw.items()}

    def clear_notes(self, job_id: str) -> None:
        """Forget the notes once they have been looked into."""
        self.redis.delete(keys.UPLOADING.format(job_id=job_id))


def record_into(pipe: Any, job_id: str, ids: Mapping[str, str], ttl_s: int) -> None:
    """Queue on ``pipe`` (sync or asyncio) the commands of `Uploads.record`."""
    uploads = keys.UPLOADS.format(job_id=job_id)
    pipe.hset(uploads, mapping=cast(Any, dict(ids)))
    pipe.expire(uploads, ttl_s)
    Inventory(pipe).record_files(ids.values())
    pipe.hdel(keys.UPLOADING.format(job_id=job_id), *ids)
