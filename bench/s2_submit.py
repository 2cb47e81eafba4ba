"""S2 submit: ``Jobs.submit`` latency p50/p99 (one job a call) and ``submit_many`` jobs per second.

Against a private Redis with no worker running: a submit writes the record and its event and puts the
start message on the broker's list; that is all a producer waits for.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from bench.common import percentiles, say, write_result
from devkit.redis_server import private_redis
from schemas.job import JobStatus
from worker.app import create_app
from worker.client import Jobs
from worker.settings import Settings

SIZES = {"tiny": (50, 50), "quick": (2000, 10_000), "full": (2000, 10_000)}
"""Per mode: `submit` calls timed one by one, and jobs in the `submit_many` call."""


def _request(index: int) -> dict[str, Any]:
    return {
        "kind": "run",
        "backend": "assistants",
        "assistant_id": "asst_bench",
        "messages": [{"role": "user", "content": f"question {index}"}],
    }


def measure(singles: int, many: int) -> dict[str, Any]:
    """Time ``singles`` submits and one ``submit_many`` of ``many`` jobs."""
    with private_redis() as url:
        settings = Settings(redis_url=url)
        jobs = Jobs(settings, celery=create_app(settings))
        try:
            for i in range(20):  # connections, scripts and imports warm before timing
                jobs.submit(_request(i))
            latencies = []
            for i in range(singles):
                began = time.perf_counter()
                jobs.submit(_request(i))
                latencies.append(time.perf_counter() - began)
            requests = [_request(i) for i in range(many)]
            began = time.perf_counter()
            refs = jobs.submit_many(requests)
            many_s = time.perf_counter() - began
            queued = jobs.store.census().jobs[JobStatus.QUEUED]
        finally:
            jobs.store.redis.close()
    return {
        "submit_calls": singles,
        "submit_latency_ms": {
            k: round(v * 1000, 3) for k, v in percentiles(latencies).items() if v is not None
        },
        "submit_many_jobs": len(refs),
        "submit_many_s": round(many_s, 3),
        "submit_many_jobs_per_s": round(len(refs) / many_s, 1),
        "queued_index_size": queued,
    }


def main(mode: str, out: Path, command: str) -> dict[str, Any]:
    """Run S2 for ``mode`` and write ``out/s2_submit.json``."""
    say("S2 submit: starting")
    singles, many = SIZES[mode]
    figures = measure(singles, many)
    say(
        f"S2 submit: p50 {figures['submit_latency_ms'].get('p50')} ms, "
        f"p99 {figures['submit_latency_ms'].get('p99')} ms; "
        f"submit_many {figures['submit_many_jobs_per_s']:,} jobs/s"
    )
    result = {"scenario": "s2_submit", "mode": mode, "command": command, **figures}
    write_result(out, "s2_submit", result)
    return result
