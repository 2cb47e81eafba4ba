"""The poll schedule: at most one entry per live job, telling the poll loop what to do with it and when.

An entry is a job id in a sorted set scored by when it is due (ms) and its `worker.polls` entry in a hash.

- The poll loop *claims* due entries with a lease: the score moves to the lease's end, so the entry is
  invisible to other pollers while held and falls due again by itself if its poller dies. The claim's
  score is its token: a settle with a token that no longer matches changes nothing.
- A job handed to a Celery message is *parked*: its score moves far into the future (`PARKED_MS` plus
  when it was parked) and the message's task id is recorded. The task that runs the message gives the
  job its next entry, or ends it (which removes the entry); when it did neither (the job now waits its turn
  on a thread), it clears the parked entry, but only if the task id is still its own. A parked entry is
  thus the marker of a message in flight, however long it waits in the broker; the watchdog looks at
  parked entries only when they are old and the broker has nothing waiting.
- The same entries are the outbox: a start (or any send from a task) is first *staged* as a `TaskDue`
  due after a grace period, then sent, then parked. If the sender dies or the broker is down, the entry
  falls due and the poll loop sends it.

There is one sorted set per job kind (`keys.POLLS`): a job's entry always sits in its own kind's set
(`worker.polls.kind_of`: a run poll is a run's, a batch poll an indexing job's, a task's entry the kind of
its task), so a poll loop claims only the kinds its worker serves (`AsyncSchedule(kinds=...)`), and one
that claims several takes what fell due first across them. Callers that know a job's kind pass its set;
the scripts that only know job ids (settle, clear_sent, the re-drive's "no entry" check) look in every set,
where a job has at most one entry.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import redis

from schemas.job import JobKind
from worker.polls import Entry, decode, encode, kind_of
from worker.store import keys
from worker.store.codec import text
from worker.store.scripts import source

if TYPE_CHECKING:  # the asyncio client is imported by whoever builds one (a CLI read never needs it)
    import redis.asyncio as aioredis

log = logging.getLogger(__name__)

PARKED_MS = 10**15
"""Score offset of parked entries (year 33658 in ms): never due, and ``PARKED_MS + parked_at`` still
fits a double exactly."""

CLAIMS_TTL_S = 86_400
"""Seconds the per-poll-loop claim counts are kept after the last claim."""


def poll_key(kind: JobKind) -> str:
    """The sorted set of ``kind``'s entries."""
    return keys.POLLS.format(kind=kind.value)


POLL_KEYS = [poll_key(kind) for kind in JobKind]
"""Every kind's sorted set, runs first (where a lookup by job id most often ends)."""


def schedule_keys(kind: JobKind) -> list[str]:
    """The keys of ``kind``'s schedule, in the order the scripts that know a job's kind take them: its
    sorted set, the entries, the sent ids."""
    return [poll_key(kind), keys.POLL_ENTRIES, keys.POLL_SENT]


ANY_KIND_KEYS = [keys.POLL_ENTRIES, keys.POLL_SENT, *POLL_KEYS]
"""The keys of the scripts that look a job up by id alone: entries, sent ids, then every kind's set."""


@dataclass
class Claim:
    """A due entry a poller holds until ``token`` (ms)."""

    job_id: str
    entry: Entry
    token: int


def now_ms() -> int:
    """Wall-clock milliseconds, the schedule's unit (shared by every host)."""
    return int(time.time() * 1000)


def parked_score(at_ms: int) -> int:
    """The score of an entry parked at ``at_ms``."""
    return PARKED_MS + at_ms


class Schedule:
    """The schedule for tasks, producers and the watchdog (synchronous)."""

    def __init__(self, client: redis.Redis):
        self.redis = client
        self._clear_sent = client.register_script(source("clear_sent"))
        self._settle = client.register_script(source("settle"))
        self._redrive = client.register_script(source("redrive"))

    def put(self, job_id: str, entry: Entry, due_in: float) -> None:
        """Give ``job_id`` ``entry``, due ``due_in`` seconds from now, whoever held it before."""
        self.put_many([(job_id, entry, due_in)])

    def put_many(self, entries: Iterable[tuple[str, Entry, float]]) -> None:
        """`put` for many ``(job id, entry, due in)`` in one round trip (one transaction)."""
        pipe = self.redis.pipeline(transaction=True)
        now = now_ms()
        for job_id, entry, due_in in entries:
            pipe.hset(keys.POLL_ENTRIES, job_id, encode(entry))
            pipe.zadd(poll_key(kind_of(entry)), {job_id: now + int(due_in * 1000)})
            pipe.hdel(keys.POLL_SENT, job_id)
        pipe.execute()

    def remove(self, job_id: str) -> None:
        """Take ``job_id`` off the schedule whoever holds it."""
        pipe = self.redis.pipeline(transaction=True)
        for key in POLL_KEYS:
            pipe.zrem(key, job_id)
        pipe.hdel(keys.POLL_ENTRIES, job_id)
        pipe.hdel(keys.POLL_SENT, job_id)
        pipe.execute()

    def stage(self, entries: Mapping[str, Entry], task_id: str, grace_s: float) -> int:
        """Put ``entries`` in the outbox: due after ``grace_s`` unless parked first, each marked as
        carried by message ``task_id``. Returns the token `park` needs."""
        due = now_ms() + int(grace_s * 1000)
        pipe = self.redis.pipeline(transaction=True)
        stage_into(pipe, entries, task_id, due)
        pipe.execute()
        return due

    def park(self, job_ids: Iterable[str], token: int, task_id: str) -> None:
        """Park the staged entries of ``job_ids`` whose score is still ``token`` (the message was sent)."""
        args = park_args(job_ids, token, task_id)
        if args:
            self._settle(keys=ANY_KIND_KEYS, args=args)

    def clear_sent(self, job_ids: Sequence[str], task_id: str) -> int:
        """Take off the schedule those of ``job_ids`` whose entry still waits on message ``task_id``."""
        if not job_ids:
            return 0
        return int(self._clear_sent(keys=ANY_KIND_KEYS, args=[task_id, *job_ids]))

    def redrive(self, job_id: str, entry: Entry, *, waited_on: str | None) -> bool:
        """Give a stalled job ``entry``, due now, if it is still as the watchdog saw it: parked on message
        ``waited_on``, or (None) with no entry at all. False when it moved meanwhile."""
        args: list[Any] = [job_id, encode(entry), now_ms(), waited_on or ""]
        return bool(self._redrive(keys=[poll_key(kind_of(entry)), *ANY_KIND_KEYS], args=args))

    def entry(self, job_id: str) -> Entry | None:
        """The entry of ``job_id``, or None."""
        raw = self.redis.hget(keys.POLL_ENTRIES, job_id)
        return decode(raw) if raw else None

    def scheduled(self, job_ids: Sequence[str]) -> list[bool]:
        """Whether each of ``job_ids`` has an entry."""
        if not job_ids:
            return []
        pipe = self.redis.pipeline(transaction=False)
        for key in POLL_KEYS:
            pipe.zmscore(key, list(job_ids))
        per_kind: list[list[Any]] = pipe.execute()
        return [any(scores[i] is not None for scores in per_kind) for i in range(len(job_ids))]

    def parked_before(self, at_ms: int, limit: int = 1000) -> list[tuple[str, int, str | None]]:
        """``(job id, parked at ms, task id)`` of entries parked before ``at_ms``, oldest first."""
        pipe = self.redis.pipeline(transaction=False)
        for key in POLL_KEYS:
            pipe.zrangebyscore(key, parked_score(0), parked_score(at_ms), start=0, num=limit, withscores=True)
        found: list[list[tuple[Any, float]]] = pipe.execute()
        rows = sorted((row for per_kind in found for row in per_kind), key=lambda row: row[1])[:limit]
        if not rows:
            return []
        ids = [text(member) for member, _ in rows]
        sent: list[Any] = self.redis.hmget(keys.POLL_SENT, ids)
        return [
            (job_id, int(score) - PARKED_MS, text(s) if s else None)
            for job_id, (_, score), s in zip(ids, rows, sent, strict=True)
        ]

    def _firsts(self, kinds: Sequence[JobKind] = tuple(JobKind)) -> list[float]:
        """The lowest score of each of ``kinds``' sets that has one."""
        pipe = self.redis.pipeline(transaction=False)
        for kind in kinds:
            pipe.zrange(poll_key(kind), 0, 0, withscores=True)
        return [float(first[0][1]) for first in pipe.execute() if first]

    def next_due_in(self) -> float | None:
        """Seconds until the earliest entry that is not parked falls due (None when there is none)."""
        firsts = [score for score in self._firsts() if score < PARKED_MS]
        return (min(firsts) - now_ms()) / 1000 if firsts else None

    def size(self) -> int:
        """Entries on the schedule (due, claimed or parked)."""
        pipe = self.redis.pipeline(transaction=False)
        for key in POLL_KEYS:
            pipe.zcard(key)
        return sum(int(n) for n in pipe.execute())

    def due(self) -> int:
        """Entries already due and not claimed."""
        pipe = self.redis.pipeline(transaction=False)
        for key in POLL_KEYS:
            pipe.zcount(key, "-inf", now_ms())
        return sum(int(n) for n in pipe.execute())

    def lag(self) -> float:
        """Seconds the most overdue unclaimed entry has waited (0 when none is due)."""
        firsts = self._firsts()
        return max(0.0, (now_ms() - min(firsts)) / 1000) if firsts else 0.0

    def entries(self) -> dict[str, Entry]:
        """Every entry (for the metrics exporter and the jobs sweep)."""
        return {text(k): decode(v) for k, v in self.redis.hgetall(keys.POLL_ENTRIES).items()}

    def claims(self) -> dict[str, int]:
        """Entries each poll loop claimed (by its worker's node name), over the last day at least."""
        return {text(k): int(v) for k, v in self.redis.hgetall(keys.POLL_CLAIMS).items()}

    def forget(self, job_ids: Sequence[str]) -> None:
        """Drop the entries of jobs that are gone (the jobs sweep)."""
        if not job_ids:
            return
        pipe = self.redis.pipeline(transaction=True)
        for key in POLL_KEYS:
            pipe.zrem(key, *job_ids)
        pipe.hdel(keys.POLL_ENTRIES, *job_ids)
        pipe.hdel(keys.POLL_SENT, *job_ids)
        pipe.execute()

    def migrate(self, batch: int = 1000) -> int:
        """Move the entries of the one-set schedule of earlier releases (`keys.LEGACY_POLLS`) into their
        kinds' sets, scores kept; how many moved. A job that already has an entry in its kind's set keeps
        that one. Run by each poll loop as it starts: nothing to do once the old set is gone."""
        moved = 0
        while True:
            rows: Any = self.redis.zrange(keys.LEGACY_POLLS, 0, batch - 1, withscores=True)
            if not rows:
                break
            ids = [text(member) for member, _ in rows]
            raw: list[Any] = self.redis.hmget(keys.POLL_ENTRIES, ids)
            pipe = self.redis.pipeline(transaction=True)
            for job_id, (_, score), entry in zip(ids, rows, raw, strict=True):
                if entry is not None:
                    with contextlib.suppress(ValueError):  # unreadable: the watchdog re-drives the job
                        pipe.zadd(poll_key(kind_of(decode(entry))), {job_id: score}, nx=True)
                        moved += 1
                pipe.zrem(keys.LEGACY_POLLS, job_id)
            pipe.execute()
        if moved:
            log.warning("moved %d schedule entries from %s into the per-kind sets", moved, keys.LEGACY_POLLS)
        return moved


def stage_into(pipe: Any, entries: Mapping[str, Entry], task_id: str, due_ms: int) -> None:
    """Queue on ``pipe`` (sync or asyncio) the commands that stage ``entries`` as carried by ``task_id``."""
    for job_id, entry in entries.items():
        pipe.hset(keys.POLL_ENTRIES, job_id, encode(entry))
        pipe.zadd(poll_key(kind_of(entry)), {job_id: due_ms})
        pipe.hset(keys.POLL_SENT, job_id, task_id)


def park_args(job_ids: Iterable[str], token: int, task_id: str) -> list[Any]:
    """ARGV of ``settle.lua`` parking the entries of ``job_ids`` still staged at ``token`` (empty: none)."""
    args: list[Any] = []
    score = parked_score(now_ms())
    for job_id in job_ids:
        args += [job_id, token, score, task_id]
    return [0, *args] if args else []


class AsyncSchedule:
    """The schedule for the poll loop and the asyncio producer (asyncio): claims the entries of ``kinds``
    (every kind by default), counting them under ``name`` (the worker's node name) when given."""

    def __init__(self, client: aioredis.Redis, kinds: Sequence[JobKind] = tuple(JobKind), name: str = ""):
        self.redis = client
        self.kinds = list(dict.fromkeys(kinds))
        self.name = name
        self._keys = [keys.POLL_ENTRIES, keys.POLL_CLAIMS, *(poll_key(kind) for kind in self.kinds)]
        self._claim = client.register_script(source("claim"))
        self._settle = client.register_script(source("settle"))

    async def claim(self, limit: int, lease_s: float) -> list[Claim]:
        """Take up to ``limit`` due entries of this poll loop's kinds for ``lease_s`` seconds, those due first
        first. An entry that does not decode is dropped and logged rather than claimed again for ever; the
        watchdog re-drives its job."""
        args: list[Any] = [now_ms(), limit, int(lease_s * 1000), self.name, CLAIMS_TTL_S]
        reply = await self._claim(keys=self._keys, args=args)
        if not reply:
            return []
        token = int(float(reply[-1]))
        claims, bad = [], []
        for i in range(0, len(reply) - 1, 2):
            job_id = text(reply[i])
            try:
                claims.append(Claim(job_id, decode(reply[i + 1]), token))
            except ValueError as exc:
                log.error("dropped the unreadable schedule entry of job %s: %s", job_id, exc)
                bad.append(job_id)
        if bad:
            pipe = self.redis.pipeline(transaction=True)
            for key in POLL_KEYS:
                pipe.zrem(key, *bad)
            pipe.hdel(keys.POLL_ENTRIES, *bad)
            pipe.hdel(keys.POLL_SENT, *bad)
            await pipe.execute()
        return claims

    async def stage(self, entries: Mapping[str, Entry], task_id: str, grace_s: float) -> int:
        """`Schedule.stage`, awaited."""
        due = now_ms() + int(grace_s * 1000)
        pipe = self.redis.pipeline(transaction=True)
        stage_into(pipe, entries, task_id, due)
        await pipe.execute()
        return due

    async def park(self, job_ids: Iterable[str], token: int, task_id: str) -> None:
        """`Schedule.park`, awaited."""
        args = park_args(job_ids, token, task_id)
        if args:
            await self._settle(keys=ANY_KIND_KEYS, args=args)

    async def next_due_in(self) -> float | None:
        """Seconds until the earliest entry of this loop's kinds falls due (None when nothing waits but
        parked entries)."""
        pipe = self.redis.pipeline(transaction=False)
        for kind in self.kinds:
            pipe.zrange(poll_key(kind), 0, 0, withscores=True)
        firsts = [float(first[0][1]) for first in await pipe.execute() if first and first[0][1] < PARKED_MS]
        return (min(firsts) - now_ms()) / 1000 if firsts else None

    async def settle(
        self,
        reschedules: Sequence[tuple[Claim, float, Entry | None]],
        parks: Sequence[tuple[Claim, str]],
    ) -> None:
        """Write many outcomes in one script call: reschedule claims ``delay`` seconds ahead (with a new
        entry when given), park others as carried by a Celery task id. Claims no longer held are skipped."""
        if not reschedules and not parks:
            return
        base = now_ms()
        args: list[Any] = [len(reschedules)]
        for claim, delay, entry in reschedules:
            args += [claim.job_id, claim.token, base + int(delay * 1000), encode(entry) if entry else ""]
        parked = parked_score(base)
        for claim, task_id in parks:
            args += [claim.job_id, claim.token, parked, task_id]
        await self._settle(keys=ANY_KIND_KEYS, args=args)
