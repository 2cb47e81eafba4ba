"""One active run per thread (or conversation): a holder key and a FIFO queue per thread in Redis.

A job acquires the thread before it creates a run there and releases it when it ends; release
hands the thread to the next live job in the queue, whose start is then dispatched. A holder
whose job has ended or vanished (its worker died between the end and the release) is taken over.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

import redis

from worker import constants as c

# Ended statuses, as the job hash stores them; a holder or queue head in one of these is stale.
_LIVE_CHECK = (
    """
local function live(id)
  local s = redis.call('HGET', '"""
    + c.JOB_KEY.split("{id}")[0]
    + """' .. id, 'status')
  return s == 'queued' or s == 'running' or s == 'requires_action'
end
"""
)

_ACQUIRE = (
    _LIVE_CHECK
    + """
-- KEYS: active, queue. ARGV: job id, mode (enqueue | reject | interrupt)
local me = ARGV[1]
local holder = redis.call('GET', KEYS[1])
if holder and holder ~= me and not live(holder) then
  redis.call('DEL', KEYS[1]); holder = false
end
if holder == me then return {'acquired', me} end
if ARGV[2] == 'reject' then
  if holder then return {'busy', holder} end
elseif ARGV[2] == 'interrupt' then
  redis.call('LREM', KEYS[2], 0, me); redis.call('LPUSH', KEYS[2], me)
elseif not redis.call('LPOS', KEYS[2], me) then
  redis.call('RPUSH', KEYS[2], me)
end
if holder then return {'waiting', holder} end
while true do
  local head = redis.call('LINDEX', KEYS[2], 0)
  if not head or head == me then break end
  if live(head) then return {'waiting', head} end
  redis.call('LPOP', KEYS[2])
end
redis.call('LREM', KEYS[2], 0, me)
redis.call('SET', KEYS[1], me)
return {'acquired', me}
"""
)

_RELEASE = (
    _LIVE_CHECK
    + """
-- KEYS: active, queue. ARGV: job id. Returns the next holder, or false.
redis.call('LREM', KEYS[2], 0, ARGV[1])
local holder = redis.call('GET', KEYS[1])
if holder and holder ~= ARGV[1] and live(holder) then return false end
while true do
  local nxt = redis.call('LPOP', KEYS[2])
  if not nxt then redis.call('DEL', KEYS[1]); return false end
  if live(nxt) then redis.call('SET', KEYS[1], nxt); return nxt end
end
"""
)


class Turn(StrEnum):
    """The answer to a request for a thread."""

    ACQUIRED = "acquired"
    """The job holds the thread now and may create its run."""
    WAITING = "waiting"
    """Another job holds (or is ahead for) the thread; this one starts when released to it."""
    BUSY = "busy"
    """Strategy `reject` and the thread is held."""


@dataclass(frozen=True)
class Acquisition:
    """What `ThreadLocks.acquire` decided, and which job holds or heads the thread."""

    turn: Turn
    other: str


class ThreadLocks:
    """The per-thread holder and queue."""

    def __init__(self, client: redis.Redis):
        self.redis = client
        self._acquire = client.register_script(_ACQUIRE)
        self._release = client.register_script(_RELEASE)

    @staticmethod
    def keys(thread: str) -> list[str]:
        """The holder and queue keys of ``thread``."""
        return [c.THREAD_ACTIVE_KEY.format(thread=thread), c.THREAD_QUEUE_KEY.format(thread=thread)]

    def enqueue(self, pipe: redis.client.Pipeline, thread: str, job_id: str) -> None:
        """Join ``thread``'s queue at submit time (in the producer's pipeline): this fixes the order."""
        pipe.rpush(c.THREAD_QUEUE_KEY.format(thread=thread), job_id)

    def acquire(self, thread: str, job_id: str, mode: str) -> Acquisition:
        """Take ``thread`` for ``job_id`` if it is free and the job is first in line."""
        turn, other = self._acquire(keys=self.keys(thread), args=[job_id, mode])
        return Acquisition(Turn(_text(turn)), _text(other))

    def release(self, thread: str, job_id: str) -> str | None:
        """Let go of ``thread`` (or leave its queue); the job id that holds it next, if any."""
        nxt = self._release(keys=self.keys(thread), args=[job_id])
        return _text(nxt) if nxt else None

    def holder(self, thread: str) -> str | None:
        """The job holding ``thread`` now."""
        value = self.redis.get(c.THREAD_ACTIVE_KEY.format(thread=thread))
        return _text(value) if value else None


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
