"""One read of the figures the metrics exporter serves, across every key family, in one round trip."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson
import redis

from schemas.job import JobStatus
from worker.store import keys
from worker.store.codec import text
from worker.store.schedule import PARKED_MS, POLL_KEYS, now_ms


@dataclass(frozen=True)
class Census:
    """What the store holds right now."""

    jobs: dict[JobStatus, int]
    """Jobs per status."""
    scheduled: int
    """Schedule entries (due, claimed, parked)."""
    due: int
    """Entries due and not claimed."""
    lag: float
    """Seconds the most overdue unclaimed entry has waited."""
    runs_in_flight: int
    """Run jobs with a run poll on the schedule."""
    api: dict[str, int]
    """API request counts by ``{endpoint}|{outcome}``."""
    dead: int
    """Jobs in the dead-letter set."""
    quarantined: int
    """Malformed broker messages set aside."""
    inventory: dict[str, int]
    """Recorded threads, conversations, vector stores and files."""


def take(client: redis.Redis) -> Census:
    """Read the census."""
    now = now_ms()
    pipe = client.pipeline(transaction=False)
    for status in JobStatus:
        pipe.zcard(keys.STATUS_INDEX.format(status=status.value))
    for key in POLL_KEYS:
        pipe.zcard(key)
        pipe.zcount(key, "-inf", now)
        pipe.zrange(key, 0, 0, withscores=True)
    pipe.hvals(keys.POLL_ENTRIES)
    pipe.hgetall(keys.METRICS_API)
    pipe.zcard(keys.DEAD_LETTERS)
    pipe.llen(keys.QUARANTINE)
    pipe.zcard(keys.INVENTORY_THREADS)
    pipe.zcard(keys.INVENTORY_CONVERSATIONS)
    pipe.scard(keys.INVENTORY_STORES)
    pipe.scard(keys.INVENTORY_FILES)
    replies: list[Any] = pipe.execute()
    n, sets = len(JobStatus), 3 * len(POLL_KEYS)
    by_status, per_set, (entries, api, dead, quarantined, *inventory) = (
        replies[:n],
        replies[n : n + sets],
        replies[n + sets :],
    )
    scheduled = sum(int(x) for x in per_set[0::3])
    due = sum(int(x) for x in per_set[1::3])
    firsts = [oldest[0][1] for oldest in per_set[2::3] if oldest and oldest[0][1] < PARKED_MS]
    lag = max((now - min(firsts)) / 1000, 0.0) if firsts else 0.0
    return Census(
        jobs=dict(zip(JobStatus, (int(x) for x in by_status), strict=True)),
        scheduled=int(scheduled),
        due=int(due),
        lag=lag,
        runs_in_flight=sum(1 for raw in entries if orjson.loads(raw).get("op") == "run"),
        api={text(k): int(v) for k, v in api.items()},
        dead=int(dead),
        quarantined=int(quarantined),
        inventory=dict(
            zip(
                ("threads", "conversations", "vector_stores", "files"),
                (int(x) for x in inventory),
                strict=True,
            )
        ),
    )
