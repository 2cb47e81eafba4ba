"""Job records in Redis: their per-status index, the event stream, waits, idempotency and dead letters.

Every write is one Lua script, so a record, its index entry, its event and (when it ends) its schedule
entry change together or not at all. Status moves are compare-and-set on the record's version: two
workers racing on one job cannot both win, and an ended job never changes again.

A record that does not parse (hand-edited, truncated by a disk fault) is never allowed to break a reader:
the first read replaces it with a `failed` record whose error is ``corrupt_record`` (its raw text kept in
the result), dead-letters it and announces it, so listings, status reads and sweeps go on.
"""

from __future__ import annotations

import builtins
import re
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
import redis
from pydantic import ValidationError

from schemas.job import (
    IllegalTransition,
    JobError,
    JobEvent,
    JobKind,
    JobRecord,
    JobStatus,
    check_transition,
)
from worker.polls import TaskDue, encode
from worker.store import keys
from worker.store.codec import text
from worker.store.schedule import now_ms, schedule_keys
from worker.store.scripts import source
from worker.store.threads import HOLD_TTL_S, queue_key

Change = Callable[[JobRecord], JobRecord | None]

CORRUPT_KEPT_CHARS = 4096
"""How much of an unparseable record is kept in its replacement's result, for a person to look at."""


class JobNotFound(KeyError):
    """No record for that job id (never existed, or expired after its retention)."""

    def __str__(self) -> str:
        return f"no job {self.args[0]}"


def new_job_id() -> str:
    """A fresh job id: sortable by time of creation, unique across hosts."""
    return f"job_{time.time_ns():x}{uuid.uuid4().hex[:10]}"


@dataclass(frozen=True)
class NewJob:
    """A job to submit: its record, the thread it queues on (if it waits its turn on one), and its start
    message (the task and the id of the message the producer sends)."""

    record: JobRecord
    thread: str | None
    start: TaskDue
    task_id: str


@dataclass(frozen=True)
class Timing:
    """When a job was submitted, started and ended, with its kind and run backend (for the metrics)."""

    kind: str
    backend: str | None
    created_at: float
    started_at: float | None
    finished_at: float | None


@dataclass(frozen=True)
class Submitted:
    """What `JobStore.submit` wrote: ``(job id, created)`` per job, and the outbox token for parking."""

    results: list[tuple[str, bool]]
    token: int


@dataclass
class Updated:
    """What `JobStore.update_many` did: the record of each job now (written, or left as it was when its
    change returned None), and why the others were not written."""

    records: dict[str, JobRecord] = field(default_factory=dict)
    errors: dict[str, Exception] = field(default_factory=dict)


def _event_type(new: JobStatus) -> str:
    return "job.started" if new == JobStatus.RUNNING else f"job.{new.value}"


def status_index(status: JobStatus | str) -> str:
    """The key of ``status``'s index."""
    return keys.STATUS_INDEX.format(status=JobStatus(status).value)


class JobScripts:
    """What the synchronous and the asyncio job stores hold alike: the client, the retention and length
    limits, and the three scripts (registered on whichever client it is)."""

    def __init__(self, client: Any, *, result_ttl: int, idempotency_ttl: int, events_maxlen: int):
        self.redis = client
        self.result_ttl = result_ttl
        self.idempotency_ttl = idempotency_ttl
        self.events_maxlen = events_maxlen
        self._submit = client.register_script(source("submit"))
        self._write = client.register_script(source("write"))
        self._bury = client.register_script(source("bury"))


class JobStore(JobScripts):
    """Reads and writes job records, their index, events and waits in one Redis."""

    redis: redis.Redis

    # --- submit ---------------------------------------------------------------------------
    def submit(self, jobs: Sequence[NewJob], grace_s: float) -> Submitted:
        """Write new `queued` jobs (one round trip), each with its start staged in the outbox due after
        ``grace_s``; a job whose idempotency key is in use is not written and its existing id returned."""
        due = now_ms() + int(grace_s * 1000)
        pipe = self.redis.pipeline(transaction=False)
        for job in jobs:
            script_keys, args = submit_call(job, due, self.events_maxlen, self.idempotency_ttl)
            self._submit(keys=script_keys, args=args, client=pipe)
        return submitted(pipe.execute(), due)

    # --- read -----------------------------------------------------------------------------
    def get(self, job_id: str) -> JobRecord | None:
        """The job's record, or None when there is none."""
        return self.get_many([job_id])[0]

    def require(self, job_id: str) -> JobRecord:
        """The job's record; `JobNotFound` when there is none."""
        record = self.get(job_id)
        if record is None:
            raise JobNotFound(job_id)
        return record

    def get_many(self, job_ids: Sequence[str]) -> builtins.list[JobRecord | None]:
        """Records for many ids in one round trip, None where a job is gone."""
        pipe = self.redis.pipeline(transaction=False)
        for job_id in job_ids:
            pipe.hmget(keys.JOB.format(id=job_id), ["record", "kind"])
        return [
            self._parse(job_id, raw, kind) if raw is not None else None
            for job_id, (raw, kind) in zip(job_ids, pipe.execute(), strict=True)
        ]

    def list(self, status: JobStatus | None = None, limit: int = 50) -> builtins.list[JobRecord]:
        """The newest jobs first, of one status or of all; index entries of expired jobs are dropped."""
        statuses = [status] if status else builtins.list(JobStatus)
        pipe = self.redis.pipeline(transaction=False)
        for s in statuses:
            pipe.zrevrange(status_index(s), 0, limit - 1, withscores=True)
        entries = newest_entries(statuses, pipe.execute(), limit)
        records = self.get_many([job_id for job_id, _ in entries])
        for (job_id, s), rec in zip(entries, records, strict=True):
            if rec is None:
                self.redis.zrem(status_index(s), job_id)
        return [rec for rec in records if rec is not None]

    def live_since(self, before: float) -> dict[str, JobStatus]:
        """Live jobs (queued, running, waiting for outputs) that entered their status before ``before``."""
        pipe = self.redis.pipeline(transaction=False)
        live = [s for s in JobStatus if not s.ended]
        for s in live:
            pipe.zrangebyscore(status_index(s), "-inf", before)
        return {text(m): s for s, members in zip(live, pipe.execute(), strict=True) for m in members}

    def ends(self, job_ids: Sequence[str]) -> builtins.list[tuple[str, str | None, str | None]]:
        """``(job id, status, error code)`` of each job in one round trip (status None: gone); the record
        is parsed only for a job that ended with an error."""
        pipe = self.redis.pipeline(transaction=False)
        for job_id in job_ids:
            pipe.hmget(keys.JOB.format(id=job_id), ["status", "record"])
        found = []
        for job_id, (status, raw) in zip(job_ids, pipe.execute(), strict=True):
            state = text(status) if status is not None else None
            code = None
            if state is not None and state != JobStatus.COMPLETED.value and raw is not None:
                try:
                    code = (orjson.loads(raw).get("error") or {}).get("code")
                except orjson.JSONDecodeError:
                    code = "corrupt_record"
            found.append((job_id, state, code))
        return found

    def timings(self, job_ids: Sequence[str]) -> builtins.list[Timing | None]:
        """The `Timing` of each job in one round trip (None: gone or unreadable); records are read with
        orjson, not validated, since only five fields are wanted."""
        pipe = self.redis.pipeline(transaction=False)
        for job_id in job_ids:
            pipe.hget(keys.JOB.format(id=job_id), "record")
        found: builtins.list[Timing | None] = []
        for raw in pipe.execute():
            try:
                data = orjson.loads(raw) if raw is not None else None
            except orjson.JSONDecodeError:
                data = None
            if not isinstance(data, dict):
                found.append(None)
                continue
            backend = (data.get("request") or {}).get("backend")
            found.append(
                Timing(
                    kind=str(data.get("kind")),
                    backend=str(backend) if backend else None,
                    created_at=float(data.get("created_at") or 0.0),
                    started_at=data.get("started_at"),
                    finished_at=data.get("finished_at"),
                )
            )
        return found

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
        the dead-letter set in the same write. An end takes the job off the poll schedule in the same
        write. Concurrent writers are serialised by compare-and-set: ``change`` is re-applied to the
        newer record on conflict.
        """
        key = keys.JOB.format(id=job_id)
        for _ in range(CAS_ATTEMPTS):
            version, raw, kind = self.redis.hmget(key, ["v", "record", "kind"])
            if raw is None:
                raise JobNotFound(job_id)
            current = self._parse(job_id, raw, kind)
            new = change(current.model_copy(deep=True))
            if new is None:
                return current
            write = WriteCall(job_id, text(version), current, new, event, data, dead)
            script_keys, args = write.call(self.result_ttl, self.events_maxlen)
            ok, _sid = self._write(keys=script_keys, args=args)
            if ok:
                return new
        raise RuntimeError(f"job {job_id}: too many concurrent writers")

    def update_many(self, changes: Mapping[str, Change]) -> Updated:
        """`update` for many jobs, folded: every record read in one round trip and every write sent in
        another (a write that lost its compare-and-set is re-applied to the newer record in the next
        pass, as `update` does). A job whose record is gone, or whose change raised (an illegal move), is
        reported in `Updated.errors` and not written; the others are."""
        done = Updated()
        pending = dict(changes)
        for _ in range(CAS_ATTEMPTS):
            if not pending:
                return done
            ids = builtins.list(pending)
            pipe = self.redis.pipeline(transaction=False)
            for job_id in ids:
                pipe.hmget(keys.JOB.format(id=job_id), ["v", "record", "kind"])
            writes: builtins.list[tuple[str, JobRecord]] = []
            pipe = self._writes(zip(ids, pipe.execute(), strict=True), pending, done, writes)
            for (job_id, new), (ok, _sid) in zip(writes, pipe.execute() if writes else [], strict=True):
                if ok:
                    done.records[job_id] = new
                    del pending[job_id]
        for job_id in pending:
            done.errors[job_id] = RuntimeError(f"job {job_id}: too many concurrent writers")
        return done

    def _writes(
        self,
        rows: Iterable[tuple[str, Any]],
        pending: dict[str, Change],
        done: Updated,
        writes: builtins.list[tuple[str, JobRecord]],
    ) -> Any:
        """A pipeline of the writes of ``pending``'s changes on the records just read (``rows``); jobs
        settled without a write (gone, unchanged, refused) leave ``pending`` for ``done``."""
        pipe = self.redis.pipeline(transaction=False)
        for job_id, (version, raw, kind) in rows:
            try:
                if raw is None:
                    raise JobNotFound(job_id)
                current = self._parse(job_id, raw, kind)
                new = pending[job_id](current.model_copy(deep=True))
                if new is None:
                    done.records[job_id] = current
                    del pending[job_id]
                    continue
                write = WriteCall(job_id, text(version), current, new)
                script_keys, args = write.call(self.result_ttl, self.events_maxlen)
            except (JobNotFound, IllegalTransition) as exc:
                done.errors[job_id] = exc
                del pending[job_id]
                continue
            self._write(keys=script_keys, args=args, client=pipe)
            writes.append((job_id, new))
        return pipe

    def set_status(self, job_id: str, status: JobStatus, *, dead: bool = False, **fields: Any) -> JobRecord:
        """Move a job to ``status`` and set ``fields`` on it (a shorthand for `update`)."""

        def change(record: JobRecord) -> JobRecord:
            return record.model_copy(update={"status": status, **fields})

        return self.update(job_id, change, dead=dead)

    def try_set_status(
        self, job_id: str, status: JobStatus, *, dead: bool = False, **fields: Any
    ) -> JobRecord | None:
        """`set_status`, returning None instead of raising when the job already ended or is gone."""
        try:
            return self.set_status(job_id, status, dead=dead, **fields)
        except (IllegalTransition, JobNotFound):
            return None

    def announce(self, job_id: str, event: str, data: dict[str, Any] | None = None) -> None:
        """Append ``event`` about a job to the stream without changing its record (a warning a reader
        should see, such as ``job.webhook_missed``)."""
        record = self.get(job_id)
        if record is None:
            return
        self.redis.xadd(
            keys.EVENTS,
            {
                "type": event,
                "job_id": job_id,
                "kind": record.kind.value,
                "status": record.status.value,
                "at": time.time(),
                "data": orjson.dumps(data or {}),
            },
            maxlen=self.events_maxlen,
            approximate=True,
        )

    # --- corrupt records --------------------------------------------------------------------
    def _parse(self, job_id: str, raw: bytes | str, kind: bytes | str | None) -> JobRecord:
        record = parse_record(raw)
        return record if record is not None else self._replace_corrupt(job_id, raw, kind)

    def _replace_corrupt(self, job_id: str, raw: bytes | str, kind: bytes | str | None) -> JobRecord:
        """Write the `failed` record that stands for an unparseable one (see the module docstring)."""
        record, script_keys, args = bury_call(job_id, raw, kind, self.result_ttl, self.events_maxlen)
        self._bury(keys=script_keys, args=args)
        return record

    # --- wait and events ------------------------------------------------------------------
    def wait(self, job_id: str, timeout: float | None = None) -> JobRecord:
        """Block until the job ends (or ``timeout`` seconds pass) and return its record.

        No polling: the end-state write pushes onto a per-job list, and each waiter blocks on a
        BLMOVE of that list onto itself, which returns at once for every waiter and consumes nothing.
        """
        record = self.require(job_id)
        if record.status.ended:
            return record
        done = keys.DONE.format(id=job_id)
        deadline = None if timeout is None else time.monotonic() + timeout
        step_max = self._block_step()
        while True:
            if self.redis.blmove(done, done, next_block(deadline, step_max), "RIGHT", "LEFT") is not None:  # type: ignore[arg-type]
                return self.require(job_id)
            if deadline is not None and time.monotonic() >= deadline:
                return self.require(job_id)

    def _block_step(self) -> float:
        return block_step(self.redis.connection_pool.connection_kwargs)

    def events(
        self, last_id: str | None = None, block_ms: int | None = None, count: int = 100
    ) -> builtins.list[JobEvent]:
        """Events after ``last_id`` (from the start of the stream when None); block up to ``block_ms``."""
        if block_ms is not None:
            block_ms = min(block_ms, int(self._block_step() * 1000))
        reply: Any = self.redis.xread({keys.EVENTS: last_id or "0-0"}, count=count, block=block_ms)
        return parse_events(reply)

    # --- dead letters ---------------------------------------------------------------------
    def dead(self, limit: int = 100) -> builtins.list[JobRecord]:
        """Dead-lettered jobs, newest first (ids whose record expired are dropped)."""
        ids = [text(m) for m in self.redis.zrevrange(keys.DEAD_LETTERS, 0, limit - 1)]
        records = self.get_many(ids)
        gone = [job_id for job_id, rec in zip(ids, records, strict=True) if rec is None]
        if gone:
            self.redis.zrem(keys.DEAD_LETTERS, *gone)
        return [rec for rec in records if rec is not None]

    def undead(self, job_id: str) -> bool:
        """Take a job off the dead-letter set; False when it was not there."""
        return bool(self.redis.zrem(keys.DEAD_LETTERS, job_id))

    # --- the jobs sweep -------------------------------------------------------------------------
    def sweep(self, *, dry_run: bool, events_before: float) -> dict[str, int]:
        """Drop index and dead-letter entries whose record expired and trim events older than
        ``events_before``; counts of what was (or, dry, would be) dropped."""
        index_keys = [status_index(s) for s in JobStatus] + [keys.DEAD_LETTERS]
        entries = 0
        for key in index_keys:
            members = [text(m) for m in self.redis.zrange(key, 0, -1)]
            gone = [m for m, exists in zip(members, self._exist(members), strict=True) if not exists]
            entries += len(gone)
            if gone and not dry_run:
                self.redis.zrem(key, *gone)
        min_id = f"{int(events_before * 1000)}-0"
        if events_before <= 0:
            events = 0
        elif dry_run:
            events = len(self.redis.xrange(keys.EVENTS, "-", f"({min_id}") or [])
        else:
            events = int(self.redis.xtrim(keys.EVENTS, minid=min_id, approximate=False))
        return {"index_entries": entries, "events": events}

    def _exist(self, job_ids: Sequence[str]) -> builtins.list[bool]:
        pipe = self.redis.pipeline(transaction=False)
        for job_id in job_ids:
            pipe.exists(keys.JOB.format(id=job_id))
        return [bool(n) for n in pipe.execute()]

    def ended_or_gone(self, job_ids: Sequence[str]) -> builtins.list[str]:
        """Those of ``job_ids`` whose record is gone or ended (for sweeping schedule entries)."""
        pipe = self.redis.pipeline(transaction=False)
        for job_id in job_ids:
            pipe.hget(keys.JOB.format(id=job_id), "status")
        return [
            job_id
            for job_id, status in zip(job_ids, pipe.execute(), strict=True)
            if status is None or JobStatus(text(status)).ended
        ]


# --- what the synchronous and the asyncio store share: each script call's KEYS and ARGV, and parsing --
CAS_ATTEMPTS = 50
"""Compare-and-set attempts of one `update` before it gives up (only a storm of writers gets there)."""


def submit_call(
    job: NewJob, due_ms: int, events_maxlen: int, idempotency_ttl: int
) -> tuple[list[str], list[Any]]:
    """KEYS and ARGV of ``submit.lua`` for one new job whose start is due at ``due_ms``."""
    record = job.record
    idem = keys.IDEMPOTENCY.format(key=record.idempotency_key) if record.idempotency_key else ""
    script_keys = [
        keys.JOB.format(id=record.id),
        status_index(JobStatus.QUEUED),
        keys.EVENTS,
        idem,
        queue_key(job.thread) if job.thread else "",
        *schedule_keys(record.kind),
    ]
    args = [
        record.id,
        record.model_dump_json(),
        record.kind.value,
        record.created_at,
        events_maxlen,
        idempotency_ttl,
        HOLD_TTL_S,
        encode(job.start),
        due_ms,
        job.task_id,
    ]
    return script_keys, args


def submitted(replies: Sequence[Any], due_ms: int) -> Submitted:
    """What a pipeline of ``submit.lua`` calls wrote."""
    return Submitted([(text(job_id), bool(created)) for created, job_id in replies], due_ms)


def newest_entries(
    statuses: Sequence[JobStatus], replies: Sequence[Any], limit: int
) -> builtins.list[tuple[str, JobStatus]]:
    """``(job id, status)`` of the newest ``limit`` index entries across the ``ZREVRANGE`` replies of
    ``statuses`` (one reply per status, with scores)."""
    entries = [(score, text(m), s) for s, rows in zip(statuses, replies, strict=True) for m, score in rows]
    entries.sort(reverse=True)
    return [(job_id, s) for _, job_id, s in entries[:limit]]


@dataclass
class WriteCall:
    """One compare-and-set write of ``write.lua``: ``new`` replaces ``current`` if the version is still
    ``version``. `call` checks the move, stamps the times and builds KEYS and ARGV."""

    job_id: str
    version: str
    current: JobRecord
    new: JobRecord
    event: str | None = None
    data: dict[str, Any] | None = None
    dead: bool = False

    def call(self, result_ttl: int, events_maxlen: int) -> tuple[list[str], list[Any]]:
        """KEYS and ARGV of the write (raises `IllegalTransition` for a move the life cycle forbids)."""
        current, new = self.current, self.new
        check_transition(self.job_id, current.status, new.status)
        now = time.time()
        new.updated_at = now
        event_type = self.event
        if new.status != current.status:
            event_type = _event_type(new.status)
            if new.status == JobStatus.RUNNING and new.started_at is None:
                new.started_at = now
            if new.status.ended:
                new.finished_at = now
        fields = {
            "v": self.version,
            "id": self.job_id,
            "status": new.status.value,
            "kind": new.kind.value,
            "now": now,
            "event": event_type or "",
            "ended": new.status.ended,
            "ttl": result_ttl,
            "prune_before": now - result_ttl,
            "dead": self.dead,
            "maxlen": events_maxlen,
        }
        script_keys = [
            keys.JOB.format(id=self.job_id),
            status_index(current.status),
            status_index(new.status),
            keys.EVENTS,
            keys.DONE.format(id=self.job_id),
            keys.DEAD_LETTERS,
            *schedule_keys(current.kind),
        ]
        return script_keys, [orjson.dumps(fields), new.model_dump_json(), orjson.dumps(self.data or {})]


def parse_record(raw: bytes | str) -> JobRecord | None:
    """The record stored as ``raw``, or None when it cannot be read (see `bury_call`)."""
    try:
        return JobRecord.model_validate_json(raw)
    except ValidationError:
        return None


def bury_call(
    job_id: str, raw: bytes | str, kind: bytes | str | None, result_ttl: int, events_maxlen: int
) -> tuple[JobRecord, builtins.list[str], builtins.list[Any]]:
    """The `failed` record that stands for an unparseable one, with KEYS and ARGV of ``bury.lua``."""
    raw_text = raw.decode(errors="replace") if isinstance(raw, bytes) else raw
    job_kind = _kind_of(kind, raw_text)
    now = time.time()
    error = JobError(
        code="corrupt_record",
        message=f"job {job_id}: its record in Redis could not be read, so the job was stopped"
        + ("" if job_kind else " (its kind could not be read either)"),
    )
    record = JobRecord(
        id=job_id,
        kind=job_kind or JobKind.RUN,
        status=JobStatus.FAILED,
        request={},
        created_at=now,
        updated_at=now,
        finished_at=now,
        error=error,
        result={"corrupt_record": raw_text[:CORRUPT_KEPT_CHARS]},
    )
    others = [status_index(s) for s in JobStatus if s != JobStatus.FAILED]
    script_keys = [
        keys.JOB.format(id=job_id),
        keys.EVENTS,
        keys.DONE.format(id=job_id),
        keys.DEAD_LETTERS,
        *schedule_keys(record.kind),
        status_index(JobStatus.FAILED),
        *others,
    ]
    args = [
        job_id,
        raw,
        record.model_dump_json(),
        record.kind.value,
        now,
        result_ttl,
        events_maxlen,
        orjson.dumps({"code": error.code}),
    ]
    return record, script_keys, args


BLOCK_MIN_S = 0.01
"""The shortest block a wait asks of Redis. Redis 6.2 truncates a blocking command's timeout to whole
milliseconds, so 0.001 s could become 0, which means "block for ever": a wait whose deadline fell within a
millisecond of its last block hung until the socket timeout."""


def next_block(deadline: float | None, step_max: float) -> float:
    """Seconds the next blocking read of a wait asks for: at most ``step_max``, what is left until
    ``deadline`` (a `time.monotonic` value; None for none), and never under `BLOCK_MIN_S`."""
    left = step_max if deadline is None else min(deadline - time.monotonic(), step_max)
    return max(left, BLOCK_MIN_S)


def block_step(connection_kwargs: dict[str, Any]) -> float:
    """Longest a blocking call may ask the server to block: well inside the client's socket timeout,
    so a slow reply on a busy host never turns into a "Timeout reading from socket"."""
    timeout = connection_kwargs.get("socket_timeout") or connection_kwargs.get("orig_socket_timeout")
    return 5.0 if not timeout else max(min(5.0, float(timeout) / 2), 0.05)


def parse_events(reply: Any) -> builtins.list[JobEvent]:
    """The events of an ``XREAD`` reply on the event stream."""
    return [parse_event(sid, fields) for _stream, rows in reply or [] for sid, fields in rows]


def parse_event(stream_id: bytes | str, fields: dict[Any, Any]) -> JobEvent:
    """A `JobEvent` from one stream entry."""
    f = {text(k): text(v) for k, v in fields.items()}
    return JobEvent(
        stream_id=text(stream_id),
        type=f["type"],
        job_id=f["job_id"],
        kind=JobKind(f["kind"]),
        status=JobStatus(f["status"]),
        at=float(f["at"]),
        data=orjson.loads(f.get("data") or "{}"),
    )


_KIND_IN_JSON = re.compile(r'"kind"\s*:\s*"([a-z]+)"')


def _kind_of(stored: bytes | str | None, raw: str) -> JobKind | None:
    """A corrupt record's kind: the hash's ``kind`` field, else whatever the raw text says, else None."""
    candidates = [text(stored)] if stored else []
    found = _KIND_IN_JSON.search(raw)
    if found:
        candidates.append(found.group(1))
    for candidate in candidates:
        if candidate in JobKind._value2member_map_:
            return JobKind(candidate)
    return None
