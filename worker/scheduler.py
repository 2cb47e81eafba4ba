"""The poll schedule: due polls in a Redis sorted set, claimed with a lease, rescheduled or released.

An entry is a job id scored by when it is due (ms). A claim moves the score to the end of the
lease, so the entry is invisible to other pollers while held, and falls due again by itself if
its poller dies. The claim's score is the holder's token: rescheduling or releasing with a token
that no longer matches (the lease ran out and someone else took it, or a task rescheduled it)
changes nothing.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson
import redis
import redis.asyncio as aioredis

from worker import constants as c

_CLAIM = """
-- KEYS: polls, meta. ARGV: now ms, limit, lease ms
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, ARGV[2])
if #ids == 0 then return {} end
local token = tonumber(ARGV[1]) + tonumber(ARGV[3])
local out = {}
for i, id in ipairs(ids) do
  redis.call('ZADD', KEYS[1], token, id)
  out[#out + 1] = id
  out[#out + 1] = redis.call('HGET', KEYS[2], id) or ''
end
out[#out + 1] = tostring(token)
return out
"""

_RESCHEDULE = """
-- KEYS: polls, meta. ARGV: (id, token, due ms, meta or '' to keep) for each entry
local done = 0
for i = 1, #ARGV, 4 do
  local score = redis.call('ZSCORE', KEYS[1], ARGV[i])
  if score and tonumber(score) == tonumber(ARGV[i + 1]) then
    redis.call('ZADD', KEYS[1], ARGV[i + 2], ARGV[i])
    if ARGV[i + 3] ~= '' then redis.call('HSET', KEYS[2], ARGV[i], ARGV[i + 3]) end
    done = done + 1
  end
end
return done
"""

_RELEASE = """
-- KEYS: polls, meta. ARGV: (id, token) for each entry
local done = 0
for i = 1, #ARGV, 2 do
  local score = redis.call('ZSCORE', KEYS[1], ARGV[i])
  if score and tonumber(score) == tonumber(ARGV[i + 1]) then
    redis.call('ZREM', KEYS[1], ARGV[i])
    redis.call('HDEL', KEYS[2], ARGV[i])
    done = done + 1
  end
end
return done
"""


@dataclass
class Claim:
    """A due entry a poller holds until ``token`` (ms): the job id and what the poller needs."""

    job_id: str
    meta: dict[str, Any]
    token: int


def now_ms() -> int:
    """Wall-clock milliseconds, the schedule's unit (shared by every host)."""
    return int(time.time() * 1000)


class Schedule:
    """Synchronous side of the schedule, for tasks and producers."""

    def __init__(self, client: redis.Redis):
        self.redis = client

    def put(self, job_id: str, due_in: float, meta: dict[str, Any]) -> None:
        """Schedule (or re-schedule, whoever holds it) ``job_id`` ``due_in`` seconds from now."""
        pipe = self.redis.pipeline(transaction=True)
        pipe.hset(c.POLL_META_KEY, job_id, orjson.dumps(meta))
        pipe.zadd(c.POLLS_KEY, {job_id: now_ms() + int(due_in * 1000)})
        pipe.execute()

    def remove(self, job_id: str) -> None:
        """Drop ``job_id`` from the schedule whoever holds it."""
        pipe = self.redis.pipeline(transaction=True)
        pipe.zrem(c.POLLS_KEY, job_id)
        pipe.hdel(c.POLL_META_KEY, job_id)
        pipe.execute()

    def meta(self, job_id: str) -> dict[str, Any] | None:
        """What is scheduled for ``job_id``, or None."""
        raw = self.redis.hget(c.POLL_META_KEY, job_id)
        return orjson.loads(raw) if raw else None

    def size(self) -> int:
        """Entries on the schedule (claimed or not)."""
        return int(self.redis.zcard(c.POLLS_KEY))

    def lag(self) -> float:
        """Seconds the most overdue unclaimed entry has waited (0 when none is due)."""
        first: Any = self.redis.zrange(c.POLLS_KEY, 0, 0, withscores=True)
        return max(0.0, (now_ms() - first[0][1]) / 1000) if first else 0.0


class AsyncSchedule:
    """Asynchronous side of the schedule, for the pollers in the worker."""

    def __init__(self, client: aioredis.Redis):
        self.redis = client
        self._claim = client.register_script(_CLAIM)
        self._reschedule = client.register_script(_RESCHEDULE)
        self._release = client.register_script(_RELEASE)

    async def claim(self, limit: int, lease_s: float) -> list[Claim]:
        """Take up to ``limit`` due entries for ``lease_s`` seconds."""
        reply = await self._claim(
            keys=[c.POLLS_KEY, c.POLL_META_KEY], args=[now_ms(), limit, int(lease_s * 1000)]
        )
        if not reply:
            return []
        token = int(float(reply[-1]))
        return [
            Claim(_text(reply[i]), orjson.loads(reply[i + 1]) if reply[i + 1] else {}, token)
            for i in range(0, len(reply) - 1, 2)
        ]

    async def next_due_in(self) -> float | None:
        """Seconds until the earliest entry falls due (None when the schedule is empty)."""
        first: Any = await self.redis.zrange(c.POLLS_KEY, 0, 0, withscores=True)
        return (first[0][1] - now_ms()) / 1000 if first else None

    async def settle(
        self, reschedules: Sequence[tuple[Claim, float, dict[str, Any] | None]], releases: Sequence[Claim]
    ) -> None:
        """Write many outcomes at once (one script call each for the reschedules and the releases):
        reschedule some claims ``delay`` s ahead, release others. A claim whose token no longer matches
        is left as it is."""
        keys = [c.POLLS_KEY, c.POLL_META_KEY]
        if reschedules:
            base = now_ms()
            args: list[Any] = []
            for claim, delay, meta in reschedules:
                due = base + int(delay * 1000)
                args += [claim.job_id, claim.token, due, orjson.dumps(meta) if meta else ""]
            await self._reschedule(keys=keys, args=args)
        if releases:
            pairs = [x for claim in releases for x in (claim.job_id, claim.token)]
            await self._release(keys=keys, args=pairs)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
