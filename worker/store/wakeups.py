"""Waking jobs from webhooks: which job each background response belongs to, deliveries already seen,
and events that arrived before their response was recorded.

The webhook receiver (`worker.webhooks`) calls `AsyncWakeups.wake` for each verified delivery; a run's
start calls `Wakeups.track` when it records a response id. A wake only makes the job's poll due now: the
poll loop retrieves the response once and the usual finish runs, so a lost or late webhook costs lag,
never a result.
"""

from __future__ import annotations

from collections.abc import Sequence
from enum import StrEnum

import redis
import redis.asyncio as aioredis

from schemas.job import JobKind
from worker.store import keys
from worker.store.codec import text
from worker.store.schedule import PARKED_MS, now_ms, poll_key
from worker.store.scripts import source


class Woken(StrEnum):
    """What a webhook delivery did."""

    WOKEN = "woken"
    """The job's poll is due now."""
    IN_FLIGHT = "in_flight"
    """The job is being polled or handed to a task already: nothing to do."""
    UNKNOWN = "unknown"
    """No job has recorded this response (yet): remembered briefly, counted."""
    DUPLICATE = "duplicate"
    """This delivery id was seen before: no effect."""
    GONE = "gone"
    """The job has no schedule entry (it ended): nothing to do."""


class Wakeups:
    """The tasks' side: record a response id for its job."""

    def __init__(self, client: redis.Redis):
        self.redis = client
        self._track = client.register_script(source("track"))

    def track(self, response_id: str, job_id: str, keep_s: float) -> bool:
        """Remember that ``response_id`` belongs to ``job_id`` for ``keep_s`` seconds; True when a webhook
        about it came already (poll it now)."""
        return self.track_many([(response_id, job_id, keep_s)])[0]

    def track_many(self, items: Sequence[tuple[str, str, float]]) -> list[bool]:
        """`track` for many ``(response id, job id, keep s)`` in one round trip."""
        pipe = self.redis.pipeline(transaction=False)
        for response_id, job_id, keep_s in items:
            keys_ = [keys.RESPONSE_JOB.format(id=response_id), keys.EARLY_EVENT.format(id=response_id)]
            self._track(keys=keys_, args=[job_id, max(int(keep_s), 1)], client=pipe)
        return [bool(early) for early in pipe.execute()]

    def ended(self, learnt_by: str) -> None:
        """Count a run end learnt by ``learnt_by`` (``webhook`` or ``poll``)."""
        self.redis.hincrby(keys.METRICS_WEBHOOKS, f"end_by_{learnt_by}", 1)

    def counts(self) -> dict[str, int]:
        """Deliveries by outcome and run ends by how they were learnt."""
        return {text(k): int(v) for k, v in self.redis.hgetall(keys.METRICS_WEBHOOKS).items()}

    def job_of(self, response_id: str) -> str | None:
        """The job a response belongs to, if recorded."""
        raw = self.redis.get(keys.RESPONSE_JOB.format(id=response_id))
        return text(raw) if raw else None


class AsyncWakeups:
    """The receiver's side: wake the job a verified delivery names."""

    def __init__(self, client: aioredis.Redis, *, dedupe_s: float, early_s: float):
        self.redis = client
        self.dedupe_s = max(int(dedupe_s), 1)
        self.early_s = max(int(early_s), 1)
        self._wake = client.register_script(source("wake"))

    async def rejected(self) -> None:
        """Count a delivery refused (bad, stale or missing signature)."""
        await self.redis.hincrby(keys.METRICS_WEBHOOKS, "rejected", 1)

    async def ignored(self) -> None:
        """Count a verified delivery of an event type that wakes nothing here."""
        await self.redis.hincrby(keys.METRICS_WEBHOOKS, "ignored", 1)

    async def wake(self, delivery_id: str, response_id: str) -> Woken:
        """Act on one delivery about ``response_id`` (see `Woken`)."""
        result = await self._wake(
            keys=[
                keys.WEBHOOK_DELIVERY.format(id=delivery_id),
                keys.RESPONSE_JOB.format(id=response_id),
                keys.EARLY_EVENT.format(id=response_id),
                poll_key(JobKind.RUN),
                keys.POLL_ENTRIES,
                keys.METRICS_WEBHOOKS,
            ],
            args=[now_ms(), self.dedupe_s, self.early_s, PARKED_MS],
        )
        return Woken(text(result))
