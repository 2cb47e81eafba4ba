"""The job store in Redis: records, the per-status index, the event stream, waits, idempotency, dead letters.

Every write is one Lua script, so a record, its index entry and its event change together or not
at all. Status moves are compare-and-set on the record's version: two workers racing on one job
cannot both win, and an ended job never changes again.
"""

from __future__ import annotations

import builtins
import time
import uuid
from collections.abc import Callable, Sequence
from typing import Any

import orjson
import redis

from schemas.job import IllegalTransition, JobEvent, JobKind, JobRecord, JobStatus, check_transition
from worker import constants as c

Change = Callable[[JobRecord], JobRecord | None]

_CREATE = """
-- KEYS: job, queued index, events, idempotency key ('' for none)
-- ARGV: id, record, now, maxlen, idem ttl, kind
if KEYS[4] ~= '' then
  local existing = redis.call('GET', KEYS[4])
  if existing then return {0, existing} end
  redis.call('SET', KEYS[4], ARGV[1], 'EX', ARGV[5])
end
redis.call('HSET', KEYS[1], 'v', 1, 'status', 'queued', 'record', ARGV[2])
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[1])
redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[4], '*', 'type', 'job.queued', 'job_id', ARGV[1],
           'kind', ARGV[6], 'status', 'queued', 'at', ARGV[3], 'data', '{}')
return {1, ARGV[1]}
"""

_WRITE = """
-- KEYS: job, old index, new index, events, done list, dead-letter set
-- ARGV: expected version, status, record, now, maxlen, event type ('' for none), kind, data,
--       ended (0/1), ttl, prune before, id, dead-letter (0/1)
local v = redis.call('HGET', KEYS[1], 'v')
if v ~= ARGV[1] then return {0, v or ''} end
redis.call('HSET', KEYS[1], 'v', tonumber(v) + 1, 'status', ARGV[2], 'record', ARGV[3])
if KEYS[2] ~= KEYS[3] then
  redis.call('ZREM', KEYS[2], ARGV[12])
  redis.call('ZADD', KEYS[3], ARGV[4], ARGV[12])
end
local sid = ''
if ARGV[6] ~= '' then
  sid = redis.call('XADD', KEYS[4], 'MAXLEN', '~', ARGV[5], '*', 'type', ARGV[6], 'job_id', ARGV[12],
                   'kind', ARGV[7], 'status', ARGV[2], 'at', ARGV[4], 'data', ARGV[8])
end
if ARGV[9] == '1' then
  redis.call('EXPIRE', KEYS[1], ARGV[10])
  redis.call('DEL', KEYS[5])
  redis.call('RPUSH', KEYS[5], ARGV[2])
  redis.call('EXPIRE', KEYS[5], ARGV[10])
  redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', ARGV[11])
end
if ARGV[13] == '1' then redis.call('ZADD', KEYS[6], ARGV[4], ARGV[12]) end
return {1, sid}
"""


class JobNotFound(KeyError):
    """No record for that job id (never existed, or expired after its retention)."""

    def __str__(self) -> str:
        return f"no job {self.args[0]}"


def new_job_id() -> str:
    """A fresh job id: sortable by time of creation, unique across hosts."""
    return f"job_{time.time_ns():x}{uuid.uuid4().hex[:10]}"


def _event_type(old: JobStatus, new: JobStatus) -> str:
    if new == JobStatus.RUNNING:
        return "job.started"
    return f"job.{new.value}"


class JobStore:
    """Reads and writes job records, their index, events and waits in one Redis."""

    def __init__(self, client: redis.Redis, *, result_ttl: int, idempotency_ttl: int, events_maxlen: int):
        self.redis = client
        self.result_ttl = result_ttl
        self.idempotency_ttl = idempotency_ttl
        self.events_maxlen = events_maxlen
        self._create = client.register_script(_CREATE)
        self._write = client.register_script(_WRITE)

    # --- create ---------------------------------------------------------------------------
    def create(self, record: JobRecord) -> tuple[str, bool]:
        """Write a new `queued` job; with an idempotency key already in use, return that job instead.

        Returns ``(job_id, created)``.
        """
        return self.create_many([record])[0]

    def create_many(self, records: Sequence[JobRecord]) -> list[tuple[str, bool]]:
        """`create` for many records in one round trip (pipelined)."""
        pipe = self.redis.pipeline(transaction=False)
        for record in records:
            idem = c.IDEMPOTENCY_KEY.format(key=record.idempotency_key) if record.idempotency_key else ""
            self._create(
                keys=[
                    c.JOB_KEY.format(id=record.id),
                    c.STATUS_INDEX_KEY.format(status=JobStatus.QUEUED.value),
                    c.EVENTS_STREAM,
                    idem,
                ],
                args=[
                    record.id,
                    record.model_dump_json(),
                    record.created_at,
                    self.events_maxlen,
                    self.idempotency_ttl,
                    record.kind.value,
                ],
                client=pipe,
            )
        return [(_text(job_id), bool(created)) for created, job_id in pipe.execute()]

    # --- read -----------------------------------------------------------------------------
    def get(self, job_id: str) -> JobRecord | None:
        """The job's record, or None when there is none."""
        raw = self.redis.hget(c.JOB_KEY.format(id=job_id), "record")
        return JobRecord.model_validate_json(raw) if raw else None

    def require(self, job_id: str) -> JobRecord:
        """The job's record; `JobNotFound` when there is none."""
        record = self.get(job_id)
        if record is None:
            raise JobNotFound(job_id)
        return record

    def get_many(self, job_ids: Sequence[str]) -> list[JobRecord | None]:
        """Records for many ids in one round trip, None where a job is gone."""
        pipe = self.redis.pipeline(transaction=False)
        for job_id in job_ids:
            pipe.hget(c.JOB_KEY.format(id=job_id), "record")
        return [JobRecord.model_validate_json(raw) if raw else None for raw in pipe.execute()]

    def list(self, status: JobStatus | None = None, limit: int = 50) -> list[JobRecord]:
        """The newest jobs first, of one status or of all; index entries of expired jobs are dropped."""
        statuses = [status] if status else list(JobStatus)
        pipe = self.redis.pipeline(transaction=False)
        for s in statuses:
            pipe.zrevrange(c.STATUS_INDEX_KEY.format(status=s.value), 0, limit - 1, withscores=True)
        entries = [
            (score, _text(m), s)
            for s, rows in zip(statuses, pipe.execute(), strict=True)
            for m, score in rows
        ]
        entries.sort(reverse=True)
        entries = entries[:limit]
        records = self.get_many([job_id for _, job_id, _ in entries])
        gone = [(s, job_id) for (_, job_id, s), rec in zip(entries, records, strict=True) if rec is None]
        for s, job_id in gone:
            self.redis.zrem(c.STATUS_INDEX_KEY.format(status=s.value), job_id)
        return [rec for rec in records if rec is not None]

    # --- change ---------------------------------------------------------------------------
    def update(
        self,
        job_id: str,
        change: Change,
        *,
        event: str | None = None,
        data: dict[str, Any] | None = None,
        dead: bool = False,
    ) -> JobRecord:
        """Apply ``change`` to the current record and write the result atomically.

        ``change`` gets a copy of the record and returns the new one (or None: nothing to write).
        A status move is checked against the life cycle and emits its event; an update that keeps
        the status emits ``event`` when given (for example ``job.progress``). ``dead`` puts the job in
        the dead-letter set in the same write, so a reader never sees it failed but not there.
        Concurrent writers are serialised by compare-and-set: ``change`` is re-applied to the newer
        record on conflict.
        """
        key = c.JOB_KEY.format(id=job_id)
        for _ in range(50):
            version, raw = self.redis.hmget(key, ["v", "record"])
            if raw is None:
                raise JobNotFound(job_id)
            current = JobRecord.model_validate_json(raw)
            new = change(current.model_copy(deep=True))
            if new is None:
                return current
            check_transition(job_id, current.status, new.status)
            now = time.time()
            new.updated_at = now
            event_type = event
            if new.status != current.status:
                event_type = _event_type(current.status, new.status)
                if new.status == JobStatus.RUNNING and new.started_at is None:
                    new.started_at = now
                if new.status.ended:
                    new.finished_at = now
            ok, _sid = self._write(
                keys=[
                    key,
                    c.STATUS_INDEX_KEY.format(status=current.status.value),
                    c.STATUS_INDEX_KEY.format(status=new.status.value),
                    c.EVENTS_STREAM,
                    c.DONE_KEY.format(id=job_id),
                    c.DEAD_LETTER_KEY,
                ],
                args=[
                    _text(version),
                    new.status.value,
                    new.model_dump_json(),
                    now,
                    self.events_maxlen,
                    event_type or "",
                    new.kind.value,
                    orjson.dumps(data or {}),
                    1 if new.status.ended else 0,
                    self.result_ttl,
                    now - self.result_ttl,
                    job_id,
                    1 if dead else 0,
                ],
            )
            if ok:
                return new
        raise RuntimeError(f"job {job_id}: too many concurrent writers")

    def set_status(self, job_id: str, status: JobStatus, *, dead: bool = False, **fields: Any) -> JobRecord:
        """Move a job to ``status`` and set ``fields`` on it (a shorthand for `update`)."""

        def change(record: JobRecord) -> JobRecord:
            return record.model_copy(update={"status": status, **fields})

        return self.update(job_id, change, dead=dead)

    def try_set_status(
        self, job_id: str, status: JobStatus, *, dead: bool = False, **fields: Any
    ) -> JobRecord | None:
        """`set_status`, returning None instead of raising when the job already ended."""
        try:
            return self.set_status(job_id, status, dead=dead, **fields)
        except IllegalTransition:
            return None

    # --- wait and events ------------------------------------------------------------------
    def wait(self, job_id: str, timeout: float | None = None) -> JobRecord:
        """Block until the job ends (or ``timeout`` seconds pass) and return its record.

        No polling: the end-state write pushes onto a per-job list, and each waiter blocks on a
        BLMOVE of that list onto itself, which returns at once for every waiter and consumes nothing.
        """
        record = self.require(job_id)
        if record.status.ended:
            return record
        done = c.DONE_KEY.format(id=job_id)
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            left = 0.0 if deadline is None else max(deadline - time.monotonic(), 0.001)
            # The server blocks at most `step` seconds a call so a socket timeout never trips.
            step = 5.0 if deadline is None else min(left, 5.0)
            if self.redis.blmove(done, done, step, "RIGHT", "LEFT") is not None:  # type: ignore[arg-type]
                return self.require(job_id)
            if deadline is not None and time.monotonic() >= deadline:
                return self.require(job_id)

    def events(
        self, last_id: str | None = None, block_ms: int | None = None, count: int = 100
    ) -> builtins.list[JobEvent]:
        """Events after ``last_id`` (from the start of the stream when None); block up to ``block_ms``."""
        reply: Any = self.redis.xread({c.EVENTS_STREAM: last_id or "0-0"}, count=count, block=block_ms)
        return [parse_event(sid, fields) for _stream, rows in reply for sid, fields in rows]

    # --- dead letters ---------------------------------------------------------------------
    def dead(self, limit: int = 100) -> builtins.list[JobRecord]:
        """Dead-lettered jobs, newest first (ids whose record expired are dropped)."""
        ids = [_text(m) for m in self.redis.zrevrange(c.DEAD_LETTER_KEY, 0, limit - 1)]
        records = self.get_many(ids)
        gone = [job_id for job_id, rec in zip(ids, records, strict=True) if rec is None]
        if gone:
            self.redis.zrem(c.DEAD_LETTER_KEY, *gone)
        return [rec for rec in records if rec is not None]

    def undead(self, job_id: str) -> bool:
        """Take a job off the dead-letter set; False when it was not there."""
        return bool(self.redis.zrem(c.DEAD_LETTER_KEY, job_id))


def parse_event(stream_id: bytes | str, fields: dict[Any, Any]) -> JobEvent:
    """A `JobEvent` from one stream entry."""
    f = {_text(k): _text(v) for k, v in fields.items()}
    return JobEvent(
        stream_id=_text(stream_id),
        type=f["type"],
        job_id=f["job_id"],
        kind=JobKind(f["kind"]),
        status=JobStatus(f["status"]),
        at=float(f["at"]),
        data=orjson.loads(f.get("data") or "{}"),
    )


def _text(value: bytes | str | Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
