"""The responses storm: every job creates on one path (``POST /v1/responses``), the emulator answers 20% of
those creates 429 with a Retry-After, and three worker processes share the rate gate. The figure is the
number of creates that reached the emulator more than 10 ms after it had answered a 429 on that path while
that Retry-After was still running (goal 0): a gate that closes for every worker at once sends none.

    python -m bench.storm [--jobs 90] [--workers 3] [--out DIR]

The emulator keeps a timeline of the path (each request's arrival, each 429's answer and wait); the jobs
are submitted one message each, so the three workers share them. Writes bench/results/storm.json and the
RESULTS.md section.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import time
from pathlib import Path
from typing import Any

from bench.common import (
    API_KEY,
    RESULTS_DIR,
    Progress,
    clean_env,
    contender_cores,
    emulator,
    say,
    stop,
    write_result,
)
from bench.contenders import _celery_worker, _drain, trial_dir
from devkit.redis_server import private_redis
from worker.app import create_app
from worker.client import Jobs
from worker.settings import Settings

ROUTE = "POST /v1/responses"
PROFILE = {"seed": 9, "response_duration": {"kind": "uniform", "min": 1.0, "max": 3.0}, "poll_after_ms": 500}
FAULTS = {"rate_429": 0.2, "retry_after_s": 0.5, "methods": ["POST"], "paths": ["/v1/responses"], "seed": 4}
"""20% of creates answered 429, each asking for half a second."""
SLACK_S = 0.010
"""A create arriving within this much of a 429's answer was already on its way: not counted."""


def on_their_way(timeline: dict[str, Any]) -> int:
    """Creates that arrived within `SLACK_S` after a 429 on the path (sent before it was known)."""
    refusals = [at for at, route, _ in timeline["refusals"] if route == ROUTE]
    arrivals = [t for t, route in timeline["arrivals"] if route == ROUTE]
    return sum(1 for t in arrivals if any(at < t <= at + SLACK_S for at in refusals))


def late_creates(timeline: dict[str, Any]) -> list[dict[str, float]]:
    """The creates that arrived more than `SLACK_S` after a 429 was answered on the path, while that 429's
    Retry-After still ran: each with how long after the 429 it came and how much wait was left."""
    refusals = [(at, until) for at, route, until in timeline["refusals"] if route == ROUTE]
    late = []
    for arrived, route in timeline["arrivals"]:
        if route != ROUTE:
            continue
        for at, until in refusals:
            if at + SLACK_S < arrived < until:
                late.append({"after_429_s": round(arrived - at, 4), "wait_left_s": round(until - arrived, 4)})
                break
    return late


def _request(index: int) -> dict[str, Any]:
    return {
        "kind": "run",
        "backend": "responses",
        "model": "gpt-4o",
        "messages": [{"role": "user", "content": f"storm {index}"}],
    }


def run(jobs_n: int, workers_n: int, workdir: Path) -> dict[str, Any]:
    """Submit ``jobs_n`` response jobs one message each to ``workers_n`` workers under the storm."""
    with emulator(PROFILE) as (base_url, admin), private_redis() as redis_url:
        env = clean_env(AJ_REDIS_URL=redis_url, OPENAI_BASE_URL=base_url, OPENAI_API_KEY=API_KEY)
        workers = [
            _celery_worker(
                "worker.app", env, workdir / f"storm-{i}.log", "--concurrency=1", f"-n storm{i}@%h"
            )
            for i in range(workers_n)
        ]
        settings = Settings(redis_url=redis_url)
        jobs = Jobs(settings, celery=create_app(settings))
        try:
            admin.reset_counters()
            admin.trace([ROUTE])
            admin.set_faults(**FAULTS)
            began = time.monotonic()
            refs = [jobs.submit(_request(i)) for i in range(jobs_n)]
            ids = [r.id for r in refs]

            def ended() -> int:
                return sum(1 for r in jobs.store.jobs.get_many(ids) if r is not None and r.status.ended)

            _drain(Progress(f"storm {jobs_n}", jobs_n), ended, jobs_n, 300)
            wall = time.monotonic() - began
            timeline = admin.timeline()
            counters = admin.counters()
        finally:
            for worker in workers:
                stop(worker, 60)
        records = jobs.store.jobs.get_many(ids)
        jobs.store.redis.close()
    statuses: dict[str, int] = {}
    for record in records:
        status = record.status.value if record else "missing"
        statuses[status] = statuses.get(status, 0) + 1
    late = late_creates(timeline)
    per_job = counters.get("responses_per_job", {})
    return {
        "jobs": jobs_n,
        "workers": workers_n,
        "faults": FAULTS,
        "late_creates": len(late),
        "late": late[:50],
        "on_their_way": on_their_way(timeline),
        "creates_arrived": sum(1 for _, route in timeline["arrivals"] if route == ROUTE),
        "answered_429": len(timeline["refusals"]),
        "early_retries_same_request": counters.get("early_retries", 0),
        "statuses": statuses,
        "responses_per_job_max": max(per_job.values(), default=0),
        "jobs_with_one_response": sum(1 for n in per_job.values() if n == 1),
        "wall_s": round(wall, 1),
    }


def section(result: dict[str, Any]) -> list[str]:
    """The RESULTS.md section."""
    return [
        "## Responses storm (bench/storm.py)",
        "",
        f"Command: `{result['command']}` (load {result['load_avg_at_start']})."
        f" {result['jobs']} response jobs, one start message each, {result['workers']} worker processes;"
        " emulator faults"
        f" `{json.dumps(result['faults'])}` with a timeline of `{ROUTE}`. *Late creates*: creates that"
        f" arrived more than {result['slack_s'] * 1000:.0f} ms after a 429 was answered on the path while"
        " its Retry-After still ran (goal 0).",
        "",
        "| late creates | within 10 ms of a 429 (already sent) | creates arrived | answered 429 "
        "| same request retried early | statuses | most responses for one job |",
        "|---:|---:|---:|---:|---:|---|---:|",
        f"| {result['late_creates']} | {result.get('on_their_way', '-')} | {result['creates_arrived']} "
        f"| {result['answered_429']} "
        f"| {result['early_retries_same_request']} | {result['statuses']} "
        f"| {result['responses_per_job_max']} |",
        "",
    ]


def main(argv: list[str] | None = None) -> None:
    """Run the storm and write the results file (and RESULTS.md when writing to bench/results)."""
    parser = argparse.ArgumentParser(prog="python -m bench.storm", description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=90)
    parser.add_argument("--workers", type=int, default=3)
    parser.add_argument("--out", type=Path, default=RESULTS_DIR)
    args = parser.parse_args(argv)
    os.sched_setaffinity(0, contender_cores())
    command = "python -m bench.storm " + shlex.join(sys.argv[1:] if argv is None else argv)
    load = [round(x, 2) for x in os.getloadavg()]
    result = run(args.jobs, args.workers, trial_dir())
    say(
        f"storm: {result['late_creates']} late creates of {result['creates_arrived']} "
        f"({result['answered_429']} answered 429), statuses {result['statuses']} (load {load})"
    )
    write_result(
        args.out,
        "storm",
        {"scenario": "storm", "command": command, "load_avg_at_start": load, "slack_s": SLACK_S, **result},
    )
    if args.out.resolve() == RESULTS_DIR.resolve():
        from bench import report

        say(f"report written: {report.write(args.out, RESULTS_DIR.parent / 'RESULTS.md')}")


if __name__ == "__main__":
    main()
