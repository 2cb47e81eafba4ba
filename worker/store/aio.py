"""The store for asyncio producers (`worker.aclient.AsyncJobs`) on ``redis.asyncio``: the asyncio face of
the owners of the job records (`worker.store.jobs`), the schedule (`worker.store.schedule`, whose
`AsyncSchedule` it uses) and the uploads (`worker.store.uploads`).

It writes only through their scripts (`worker.store.scripts.source`) and their KEYS/ARGV builders
(`submit_call`, `WriteCall`, `bury_call`, `stage_into`, `park_args`, `record_into`), so a key family
still has one definition of what a write does; only the round trips are awaited. Its reads name the same
keys as `JobStore`'s. Nothing here blocks an event loop: a wait is a BLMOVE awaited in steps well inside
the client's socket timeout.
"""

from __future__ import annotations

import builtins
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis

from schemas.job import JobEvent, JobRecord, JobStatus
from worker.store import keys
from worker.store.codec import text
from worker.store.inventory import Inventory
from worker.store.jobs import (
    CAS_ATTEMPTS,
    Change,
    JobNotFound,
    JobScripts,
    NewJob,
    Submitted,
    WriteCall,
    block_step,
    bury_call,
    newest_entries,
    next_block,
    parse_events,
    parse_record,
    status_index,
    submit_call,
    submitted,
)
from worker.store.schedule import AsyncSchedule, now_ms
from worker.store.uploads import record_into


class AsyncJobStore(JobScripts):
    """`worker.store.jobs.JobStore` for asyncio: records, their index, events, waits, dead letters."""

    redis: aioredis.Redis

    async def submit(self, jobs: Sequence[NewJob], grace_s: float) -> Submitted:
        """`JobStore.submit`: every job written in one round trip, its start staged in the outbox."""
        due = now_ms() + int(grace_s * 1000)
        pipe = self.redis.pipeline(transaction=False)
        for job in jobs:
            script_keys, args = submit_call(job, due, self.events_maxlen, self.idempotency_ttl)
            await self._submit(keys=script_keys, args=args, client=pipe)
        return submitted(await pipe.execute(), due)

    async def get(self, job_id: str) -> JobRecord | None:
        """The job's record, or None when there is none."""
        return (await self.get_many([job_id]))[0]

    async def require(self, job_id: str) -> JobRecord:
        """The job's record; `JobNotFound` when there is none."""
        record = await self.get(job_id)
        if record is None:
            raise JobNotFound(job_id)
        return record

    async def get_many(self, job_ids: Sequence[str]) -> builtins.list[JobRecord | None]:
        """Records for many ids in one round trip, None where a job is gone."""
        pipe = self.redis.pipeline(transaction=False)
        for job_id in job_ids:
            pipe.hmget(keys.JOB.format(id=job_id), ["record", "kind"])
        replies = await pipe.execute()
        return [
            await self._parse(job_id, raw, kind) if raw is not None else None
            for job_id, (raw, kind) in zip(job_ids, replies, strict=True)
        ]

    async def list(self, status: JobStatus | None = None, limit: int = 50) -> builtins.list[JobRecord]:
        """The newest jobs first, of one status or of all; index entries of expired jobs are dropped."""
        statuses = [status] if status else builtins.list(JobStatus)
        pipe = self.redis.pipeline(transaction=False)
        for s in statuses:
            pipe.zrevrange(status_index(s), 0, limit - 1, withscores=True)
        entries = newest_entries(statuses, await pipe.execute(), limit)
        records = await self.get_many([job_id for job_id, _ in entries])
        for (job_id, s), rec in zip(entries, records, strict=True):
            if rec is None:
                await self.redis.zrem(status_index(s), job_id)
        return [rec for rec in records if rec is not None]

    async def update(
        self,
        job_id: str,
        change: Change,
        *,
        event: str | None = None,
        data: dict[str, Any] | None = None,
        dead: bool = False,
    ) -> JobRecord:
        """`JobStore.update`: apply ``change`` with compare-and-set, re-applied on conflict."""
        key = keys.JOB.format(id=job_id)
        for _ in range(CAS_ATTEMPTS):
            version, raw, kind = await self.redis.hmget(key, ["v", "record", "kind"])
            if raw is None:
                raise JobNotFound(job_id)
            current = await self._parse(job_id, raw, kind)
            new = change(current.model_copy(deep=True))
            if new is None:
                return current
            write = WriteCall(job_id, text(version), current, new, event, data, dead)
            script_keys, args = write.call(self.result_ttl, self.events_maxlen)
            ok, _sid = await self._write(keys=script_keys, args=args)
            if ok:
                return new
        raise RuntimeError(f"job {job_id}: too many concurrent writers")

    async def wait(self, job_id: str, timeout: float | None = None) -> JobRecord:
        """`JobStore.wait`: until the job ends or ``timeout`` passes, the record either way; no polling."""
        record = await self.require(job_id)
        if record.status.ended:
            return record
        done = keys.DONE.format(id=job_id)
        deadline = None if timeout is None else time.monotonic() + timeout
        step_max = block_step(self.redis.connection_pool.connection_kwargs)
        while True:
            moved = await self.redis.blmove(done, done, next_block(deadline, step_max), "RIGHT", "LEFT")  # type: ignore[arg-type]
            if moved is not None:
                return await self.require(job_id)
            if deadline is not None and time.monotonic() >= deadline:
                return await self.require(job_id)

    async def events(
        self, last_id: str | None = None, block_ms: int | None = None, count: int = 100
    ) -> builtins.list[JobEvent]:
        """Events after ``last_id`` (from the start when None), blocking up to ``block_ms`` for new ones."""
        if block_ms is not None:
            block_ms = min(block_ms, int(block_step(self.redis.connection_pool.connection_kwargs) * 1000))
        reply: Any = await self.redis.xread({keys.EVENTS: last_id or "0-0"}, count=count, block=block_ms)
        return parse_events(reply)

    async def dead(self, limit: int = 100) -> builtins.list[JobRecord]:
        """Dead-lettered jobs, newest first (ids whose record expired are dropped)."""
        ids = [text(m) for m in await self.redis.zrevrange(keys.DEAD_LETTERS, 0, limit - 1)]
        records = await self.get_many(ids)
        gone = [job_id for job_id, rec in zip(ids, records, strict=True) if rec is None]
        if gone:
            await self.redis.zrem(keys.DEAD_LETTERS, *gone)
        return [rec for rec in records if rec is not None]

    async def undead(self, job_id: str) -> bool:
        """Take a job off the dead-letter set; False when it was not there."""
        return bool(await self.redis.zrem(keys.DEAD_LETTERS, job_id))

    async def _parse(self, job_id: str, raw: bytes | str, kind: bytes | str | None) -> JobRecord:
        record = parse_record(raw)
        if record is not None:
            return record
        record, script_keys, args = bury_call(job_id, raw, kind, self.result_ttl, self.events_maxlen)
        await self._bury(keys=script_keys, args=args)
        return record


class AsyncUploads:
    """What `worker.store.uploads.Uploads` records, for a producer that uploads its files itself."""

    def __init__(self, client: aioredis.Redis, ttl_s: int):
        self.redis = client
        self.ttl_s = ttl_s

    async def record(self, job_id: str, ids: Mapping[str, str]) -> None:
        """Record uploaded ``path -> file id`` pairs and the files in the inventory, in one transaction."""
        pipe = self.redis.pipeline(transaction=True)
        record_into(pipe, job_id, ids, self.ttl_s)
        await pipe.execute()

    async def forget_files(self, file_ids: Sequence[str]) -> None:
        """Drop files deleted again from the inventory."""
        if not file_ids:
            return
        pipe = self.redis.pipeline(transaction=False)
        inventory = Inventory(pipe)  # type: ignore[arg-type]  # the owner queues its own commands
        for file_id in file_ids:
            inventory.forget_file(file_id)
        await pipe.execute()


@dataclass
class AsyncStore:
    """The owners an asyncio producer needs, on one ``redis.asyncio`` client."""

    redis: aioredis.Redis
    jobs: AsyncJobStore
    schedule: AsyncSchedule
    uploads: AsyncUploads

    @classmethod
    def on(
        cls, client: aioredis.Redis, *, result_ttl: int, idempotency_ttl: int, events_maxlen: int
    ) -> AsyncStore:
        """The store on ``client``."""
        return cls(
            redis=client,
            jobs=AsyncJobStore(
                client, result_ttl=result_ttl, idempotency_ttl=idempotency_ttl, events_maxlen=events_maxlen
            ),
            schedule=AsyncSchedule(client),
            uploads=AsyncUploads(client, result_ttl),
        )

    async def aclose(self) -> None:
        """Close the client's connections."""
        await self.redis.aclose()
