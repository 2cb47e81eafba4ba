"""What one start costs: worker CPU per start, Redis round trips per start and API requests per start, with
a profile of where the CPU goes.

    python -m bench.start_cost [--jobs 1000] [--backend responses|assistants] [--profile]

Starts a private Redis and an emulator (pinned to its own core, responses and runs long enough that none
ends during the measurement), submits ``--jobs`` run jobs, then runs the start task in this process on the
messages a worker would get (`SUBMIT_CHUNK` jobs each), the way a pool process does. Only the start phase
is measured: CPU seconds of this process (every thread), Redis round trips this process made (one per
command or pipeline sent), the emulator's request counters. ``--profile`` runs it under cProfile and keeps
the functions with the most time, and the share of it spent in the HTTP client, Redis and pydantic.
Writes bench/results/start_cost.json (``--out``) and the RESULTS.md section.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import pstats
import shlex
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import redis

from bench.common import API_KEY, RESULTS_DIR, contender_cores, emulator, say, write_result
from devkit.redis_server import private_redis

PROFILE = {
    "seed": 3,
    "run_duration": {"kind": "uniform", "min": 300.0, "max": 600.0},
    "response_duration": {"kind": "uniform", "min": 300.0, "max": 600.0},
    "poll_after_ms": 1000,
}
"""Runs and responses outlive the measurement: it prices starts, not polls."""
GROUPS = {
    "http client (openai, httpx2, aiohttp)": ("openai/", "httpx2/", "httpcore", "aiohttp/", "h11/"),
    "redis client": ("redis/",),
    "pydantic": ("pydantic",),
    "celery / kombu": ("celery/", "kombu/"),
    "sockets, ssl, selectors": ("socket.py", "selectors.py", "ssl.py"),
}
"""Where a profiled function's file lives, for the share of CPU per library."""


@contextmanager
def counting_round_trips() -> Iterator[Callable[[], int]]:
    """Count the Redis round trips of this process: each command or pipeline is sent once."""
    sent = 0
    originals = {cls: cls.send_packed_command for cls in (redis.connection.AbstractConnection,)}

    def counted(original: Any) -> Any:
        def send(self: Any, *args: Any, **kwargs: Any) -> Any:
            nonlocal sent
            sent += 1
            return original(self, *args, **kwargs)

        return send

    for cls, original in originals.items():
        cls.send_packed_command = counted(original)  # type: ignore[attr-defined]
    try:
        yield lambda: sent
    finally:
        for cls, original in originals.items():
            cls.send_packed_command = original  # type: ignore[attr-defined]


def _request(backend: str, assistant_id: str | None, index: int) -> dict[str, Any]:
    request: dict[str, Any] = {
        "kind": "run",
        "backend": backend,
        "messages": [{"role": "user", "content": f"question {index}"}],
    }
    if backend == "assistants":
        request["assistant_id"] = assistant_id
    else:
        request["model"] = "gpt-4o"
    return request


def _shares(stats: pstats.Stats, total: float) -> dict[str, float]:
    """Share of the profiled time (own time, summed per library) by `GROUPS`."""
    own: dict[str, float] = dict.fromkeys(GROUPS, 0.0)
    for (filename, _line, _name), row in stats.stats.items():  # type: ignore[attr-defined]
        for group, parts in GROUPS.items():
            if any(p in filename for p in parts):
                own[group] += row[2]
                break
    return {group: round(seconds / total, 3) for group, seconds in own.items()} if total else {}


def _top(stats: pstats.Stats, count: int = 20) -> list[dict[str, Any]]:
    rows = sorted(stats.stats.items(), key=lambda kv: kv[1][3], reverse=True)  # type: ignore[attr-defined]
    return [
        {
            "function": f"{Path(filename).name}:{line}({name})",
            "calls": row[1],
            "own_s": round(row[2], 4),
            "cumulative_s": round(row[3], 4),
        }
        for (filename, line, name), row in rows[:count]
    ]


def measure(jobs_n: int, backend: str, profile: bool) -> dict[str, Any]:
    """Submit ``jobs_n`` run jobs and run their starts in this process; the figures."""
    with emulator(PROFILE) as (base_url, admin), private_redis() as redis_url:
        os.environ.update({"AJ_REDIS_URL": redis_url, "OPENAI_BASE_URL": base_url, "OPENAI_API_KEY": API_KEY})
        from tasks.assistants import beta, quiet_assistants_deprecation
        from worker import constants as c
        from worker.app import create_app
        from worker.async_api import api_loop
        from worker.client import Jobs
        from worker.openai_client import openai_client
        from worker.settings import Settings

        settings = Settings()
        app = create_app(settings)
        app.set_current()
        jobs = Jobs(settings, celery=app)
        assistant_id = None
        if backend == "assistants":
            quiet_assistants_deprecation()
            assistant_id = beta(openai_client()).assistants.create(model="gpt-4o").id
        refs = jobs.submit_many([_request(backend, assistant_id, i) for i in range(jobs_n)])
        ids = [r.id for r in refs]
        chunks = [ids[i : i + c.SUBMIT_CHUNK] for i in range(0, len(ids), c.SUBMIT_CHUNK)]
        start = app.tasks[c.TASK_START.format(kind="run")]
        start.apply(args=[chunks[0][:1]])  # warm: connections, imports, scripts (not counted)
        admin.reset_counters()
        profiler = cProfile.Profile() if profile else None
        with counting_round_trips() as round_trips:
            cpu0, wall0 = time.process_time(), time.monotonic()
            if profiler:
                profiler.enable()
            for chunk in chunks:
                start.apply(args=[chunk])
            if profiler:
                profiler.disable()
            cpu, wall = time.process_time() - cpu0, time.monotonic() - wall0
            trips = round_trips()
        counters = admin.counters()
        records = jobs.store.jobs.get_many(ids)
        started = sum(1 for r in records if r and (r.remote.get("response_id") or r.remote.get("run_id")))
        requests: dict[str, int] = counters.get("requests", {})
        per = max(started - 1, 1)  # the warm-up start is not counted; a start passed on is not measured
        result: dict[str, Any] = {
            "jobs": jobs_n,
            "backend": backend,
            "started": started,
            "jobs_per_message": c.SUBMIT_CHUNK,
            "cpu_ms_per_start": round(1000 * cpu / per, 3),
            "wall_s": round(wall, 2),
            "starts_per_s": round(started / wall, 1),
            "redis_round_trips_per_start": round(trips / per, 2),
            "api_requests_per_start": round(sum(requests.values()) / per, 2),
            "api_requests": requests,
            "profiled": profile,
        }
        if profiler:
            stats = pstats.Stats(profiler)
            total = sum(row[2] for row in stats.stats.values())  # type: ignore[attr-defined]
            result["profile_shares"] = _shares(stats, total)
            result["profile_top"] = _top(stats)
        jobs.store.redis.close()
        api_loop().close()
        return result


def section(result: dict[str, Any]) -> list[str]:
    """The RESULTS.md section: one row per measurement, then where the CPU went in the profiled ones."""
    lines = [
        "## Start cost (bench/start_cost.py)",
        "",
        "Run starts in one process, on the messages a worker would get; CPU of the process (every thread),"
        " Redis round trips it made, API requests the emulator served, per start. `before` is the SDK"
        " start (one job at a time, 20 a message), `after` the lean path (creates on aiohttp, writes"
        " folded per group). Profiled rows run under cProfile, which sees the calling thread only (the"
        " lean path's event loop thread is not in its figures).",
        "",
        "| row | command | load | CPU ms / start | Redis round trips / start | API requests / start "
        "| starts/s (one process) | jobs a message |",
        "|---|---|---|---:|---:|---:|---:|---:|",
    ]
    for r in result["rows"]:
        lines.append(
            f"| {r['label']} | `{r['command']}` | {r.get('load_avg')} | {r['cpu_ms_per_start']} "
            f"| {r['redis_round_trips_per_start']} | {r['api_requests_per_start']} | {r['starts_per_s']} "
            f"| {r['jobs_per_message']} |"
        )
    for r in result["rows"]:
        if r.get("profile_shares"):
            shares = ", ".join(f"{k} {v:.0%}" for k, v in r["profile_shares"].items())
            lines += ["", f"{r['label']}: own time by library: {shares}; the most expensive calls:", ""]
            lines += [f"- `{t['function']}`: {t['cumulative_s']} s cumulative, {t['calls']} calls"
                      for t in r["profile_top"][6:16]]  # fmt: skip
    return [*lines, ""]


def main(argv: list[str] | None = None) -> None:
    """Measure and write the results file (and RESULTS.md when writing to bench/results)."""
    parser = argparse.ArgumentParser(prog="python -m bench.start_cost", description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--backend", choices=("responses", "assistants"), default="responses")
    parser.add_argument("--profile", action="store_true", help="run under cProfile (slower)")
    parser.add_argument("--label", default="", help="the row's name, e.g. before or after")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR)
    args = parser.parse_args(argv)
    os.sched_setaffinity(0, contender_cores())
    command = "python -m bench.start_cost " + shlex.join(sys.argv[1:] if argv is None else argv)
    load = [round(x, 2) for x in os.getloadavg()]
    row = measure(args.jobs, args.backend, args.profile)
    row.update(label=args.label or args.backend, command=command, load_avg=load)
    say(
        f"start cost {row['label']}: {row['cpu_ms_per_start']} CPU-ms/start, "
        f"{row['redis_round_trips_per_start']} Redis round trips/start, "
        f"{row['api_requests_per_start']} API requests/start, {row['starts_per_s']} starts/s (load {load})"
    )
    path = args.out / "start_cost.json"
    previous = json.loads(path.read_text()) if path.exists() else {"rows": []}
    rows = [r for r in previous.get("rows", []) if r.get("label") != row["label"]] + [row]
    write_result(args.out, "start_cost", {"scenario": "start_cost", "rows": rows})
    if args.out.resolve() == RESULTS_DIR.resolve():
        from bench import report

        say(f"report written: {report.write(args.out, RESULTS_DIR.parent / 'RESULTS.md')}")


if __name__ == "__main__":
    main()
