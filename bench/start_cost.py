"""What one start costs: worker CPU per start, Redis round trips per start and API requests per start, with
a profile of where the CPU goes.

    python -m bench.start_cost [--jobs 1000] [--backend responses|assistants] [--profile]

Starts a private Redis and an emulator (pinned to its own core, responses and runs long enough that none
ends during the measurement), submits ``--jobs`` run jobs, then runs the start task in this process on the
messages a worker would get (`SUBMIT_CHUNK` jobs each), the way a pool process does. Only the start phase
is measured: CPU seconds of this process (every thread), Redis round trips this process made (one per
command or pipeline sent), the emulator's request counters. ``--profile`` samples the process with py-spy
(every thread, the lean path's event loop included) and keeps where the samples were: the share per
library of the innermost frame, and the functions seen most.
Writes bench/results/start_cost.json (``--out``) and the RESULTS.md section.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import signal
import subprocess
import sys
import tempfile
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


def _library(frame: str) -> str:
    for group, parts in GROUPS.items():
        if any(p in frame for p in parts):
            return group
    if frame.split("(")[-1].startswith(("worker/", "tasks/", "schemas/")):
        return "assistant-jobs"
    return "other (stdlib, asyncio, orjson, C)"


def parse_samples(raw: str) -> dict[str, Any]:
    """Shares of py-spy's collapsed stacks (``frame;frame;... count`` lines): by the library of the innermost
    frame, and the innermost functions seen most."""
    by_library: dict[str, int] = {}
    by_function: dict[str, int] = {}
    total = 0
    for line in raw.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        leaf = stack.rsplit(";", 1)[-1]
        total += int(count)
        by_library[_library(leaf)] = by_library.get(_library(leaf), 0) + int(count)
        by_function[leaf] = by_function.get(leaf, 0) + int(count)
    top = sorted(by_function.items(), key=lambda kv: kv[1], reverse=True)[:15]
    return {
        "samples": total,
        "shares": {k: round(v / total, 3) for k, v in sorted(by_library.items(), key=lambda kv: -kv[1])},
        "top": [{"function": f, "share": round(n / total, 3)} for f, n in top],
    }


@contextmanager
def sampled(enabled: bool) -> Iterator[dict[str, Any]]:
    """py-spy on this process for the block (when ``enabled``); the parsed samples land in the dict."""
    found: dict[str, Any] = {}
    if not enabled:
        yield found
        return
    out = Path(tempfile.mkdtemp(prefix="aj-start-cost-")) / "samples.txt"
    spy = str(Path(sys.executable).parent / "py-spy")
    cmd = [spy, "record", "--pid", str(os.getpid()), "--rate", "250", "--format", "raw", "--nonblocking"]
    proc = subprocess.Popen([*cmd, "--output", str(out)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    time.sleep(1.0)  # py-spy attaches
    try:
        yield found
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(30)
        found.update(parse_samples(out.read_text() if out.exists() else ""))


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
        with counting_round_trips() as round_trips, sampled(profile) as samples:
            cpu0, wall0 = time.process_time(), time.monotonic()
            for chunk in chunks:
                start.apply(args=[chunk])
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
        if samples:
            result["profile"] = samples
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
        " folded per group). Profiled rows are sampled by py-spy (every thread, 250 Hz), which slows the"
        " process a little: their CPU figures are not the ones to quote.",
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
        if r.get("profile"):
            shares = ", ".join(f"{k} {v:.0%}" for k, v in r["profile"]["shares"].items())
            lines += [
                "",
                f"{r['label']} ({r['profile']['samples']:,} py-spy samples, every thread): innermost"
                f" frame by library: {shares}; the functions seen most:",
                "",
            ]
            lines += [f"- `{t['function']}`: {t['share']:.1%}" for t in r["profile"]["top"][:10]]  # fmt: skip
    return [*lines, ""]


def main(argv: list[str] | None = None) -> None:
    """Measure and write the results file (and RESULTS.md when writing to bench/results)."""
    parser = argparse.ArgumentParser(prog="python -m bench.start_cost", description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--backend", choices=("responses", "assistants"), default="responses")
    parser.add_argument("--profile", action="store_true", help="sample it with py-spy (slower)")
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
