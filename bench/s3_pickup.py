"""S3 pickup: from a job's end state being written to another process reading its event from the stream.

A writer process moves jobs to `completed` one at a time (``store.set_status``, the same write a
worker's finish step makes); a reader process blocks on XREAD of the event stream (``Jobs.events``).
Latency = the reader's clock when the event arrived minus the event's ``at`` (taken by the writer just
before its write). Both are processes on this host, so they share one clock.
"""

from __future__ import annotations

import multiprocessing
import time
from pathlib import Path
from typing import Any

from bench.common import percentiles, say, write_result
from devkit.redis_server import private_redis
from schemas.job import JobKind, JobRecord, JobStatus
from worker.connections import make_store
from worker.polls import TaskDue
from worker.settings import Settings
from worker.store import NewJob, new_job_id

SIZES = {"tiny": 50, "quick": 2000, "full": 5000}
GAP_S = 0.002
"""Pause between end-state writes: latency is measured one event at a time, not under a flood."""


def _reader(url: str, count: int, ready: Any, results: Any) -> None:
    store = make_store(Settings(redis_url=url))
    last = "$"
    latencies: list[float] = []
    ready.set()
    while len(latencies) < count:
        for event in store.jobs.events(last, block_ms=5000, count=100):
            got = time.time()
            last = event.stream_id
            if event.status == JobStatus.COMPLETED:
                latencies.append(got - event.at)
    results.put(latencies)


def _writer(url: str, count: int) -> None:
    store = make_store(Settings(redis_url=url))
    now = time.time()
    records = [
        JobRecord(
            id=new_job_id(),
            kind=JobKind.RUN,
            request={},
            created_at=now,
            updated_at=now,
            deadline_at=now + 600,
        )
        for _ in range(count)
    ]
    store.jobs.submit([NewJob(r, None, TaskDue("aj.run.start", [[r.id]]), "bench") for r in records], 600)
    for record in records:
        store.jobs.set_status(record.id, JobStatus.RUNNING)
    for record in records:
        store.jobs.set_status(record.id, JobStatus.COMPLETED)
        time.sleep(GAP_S)


def measure(count: int) -> dict[str, Any]:
    """Write ``count`` end states and time each one's arrival at the reader."""
    ctx = multiprocessing.get_context("spawn")
    with private_redis() as url:
        ready, results = ctx.Event(), ctx.Queue()
        reader = ctx.Process(target=_reader, args=(url, count, ready, results))
        reader.start()
        ready.wait(30)
        time.sleep(0.2)  # the reader is inside its blocking XREAD before the first write
        writer = ctx.Process(target=_writer, args=(url, count))
        writer.start()
        writer.join(300)
        latencies: list[float] = results.get(timeout=60)
        reader.join(10)
    return {
        "events": len(latencies),
        "write_gap_ms": GAP_S * 1000,
        "pickup_ms": {k: round(v * 1000, 3) for k, v in percentiles(latencies).items() if v is not None},
        "pickup_max_ms": round(max(latencies) * 1000, 3),
    }


def main(mode: str, out: Path, command: str) -> dict[str, Any]:
    """Run S3 for ``mode`` and write ``out/s3_pickup.json``."""
    say("S3 pickup: starting")
    figures = measure(SIZES[mode])
    say(f"S3 pickup: p50 {figures['pickup_ms']['p50']} ms, p99 {figures['pickup_ms']['p99']} ms")
    result = {"scenario": "s3_pickup", "mode": mode, "command": command, **figures}
    write_result(out, "s3_pickup", result)
    return result
