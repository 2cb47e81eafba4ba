"""Redis cost per job: the commands and the Redis CPU each job kind costs, measured on real Redis servers.

One worker (``celery -A worker.app worker``, default settings: first poll after 1 s, then x1.5 up to 2 s),
the emulator in its own process, and two private redis-servers: one for the store (records, events, the
poll schedule), one for the broker (Celery's queues), so each cost is told apart; deployed on one Redis,
their sum is what it pays. For each kind, N jobs are submitted at once and waited for; ``INFO
commandstats`` and ``INFO cpu`` are read before and after, and what the idle worker costs over the same
time (its poll loop looking for due entries, kombu's polling, the watchdog: measured first, for a few
seconds) is taken off. The waiting itself reads one counter per half second, also taken off.

    .venv/bin/python -m bench.redis_cost [--runs 300] [--indexes 40] [--cleanups 40] [--run-s 6]

Writes bench/results/redis_cost.json (the raw figures, per command) and bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis

from bench.common import (
    API_KEY,
    RESULTS_DIR,
    ROOT,
    clean_env,
    contender_cores,
    emulator,
    pin_to,
    say,
    stop,
    write_result,
)
from devkit.redis_server import private_redis
from schemas.job import JobStatus
from worker.app import create_app
from worker.client import Jobs
from worker.settings import Settings

IDLE_S = 8.0
"""Seconds the idle worker is watched before the jobs, to take its own cost off."""
FILES_PER_INDEX = 3
"""Small files each indexing job uploads and indexes."""


@dataclass(frozen=True)
class Snapshot:
    """One Redis server's command counts and CPU seconds at a moment."""

    calls: dict[str, int]
    cpu_s: float
    at: float

    @classmethod
    def of(cls, client: redis.Redis) -> Snapshot:
        """Read ``INFO commandstats`` and ``INFO cpu`` (the INFO calls themselves are left out)."""
        stats: dict[str, Any] = client.info("commandstats")
        cpu: dict[str, Any] = client.info("cpu")
        calls = {
            name.removeprefix("cmdstat_"): int(value["calls"])
            for name, value in stats.items()
            if name != "cmdstat_info"
        }
        return cls(calls, float(cpu["used_cpu_user"]) + float(cpu["used_cpu_sys"]), time.monotonic())

    def minus(self, before: Snapshot) -> tuple[dict[str, int], float, float]:
        """Commands by name, CPU seconds and wall seconds since ``before``."""
        calls = {k: v - before.calls.get(k, 0) for k, v in self.calls.items() if v - before.calls.get(k, 0)}
        return calls, self.cpu_s - before.cpu_s, self.at - before.at


@dataclass(frozen=True)
class Rate:
    """What the idle worker costs a server per second."""

    calls: dict[str, float]
    cpu_s: float

    def over(self, seconds: float) -> tuple[dict[str, float], float]:
        """The idle cost over ``seconds``."""
        return {k: v * seconds for k, v in self.calls.items()}, self.cpu_s * seconds


def idle_rate(client: redis.Redis, seconds: float) -> Rate:
    """The commands and CPU a server spends per second with the worker idle."""
    before = Snapshot.of(client)
    time.sleep(seconds)
    calls, cpu, wall = Snapshot.of(client).minus(before)
    return Rate({k: v / wall for k, v in calls.items()}, cpu / wall)


def run_requests(count: int) -> list[dict[str, Any]]:
    """Background-response runs on the default backend."""
    return [
        {"kind": "run", "model": "gpt-4o", "messages": [{"role": "user", "content": f"question {i}"}]}
        for i in range(count)
    ]


def index_requests(count: int, folder: Path) -> list[dict[str, Any]]:
    """Indexing jobs, each uploading and indexing `FILES_PER_INDEX` small files into a new store."""
    requests = []
    for i in range(count):
        paths = []
        for j in range(FILES_PER_INDEX):
            path = folder / f"doc-{i}-{j}.md"
            path.write_text(f"# Document {i}.{j}\n\nSome text to index.\n")
            paths.append(str(path))
        requests.append({"kind": "index", "new_store": {"name": f"cost-{i}"}, "paths": paths})
    return requests


def cleanup_requests(count: int) -> list[dict[str, Any]]:
    """Clean-up jobs of the kind beat submits most often: expired job records and old events."""
    return [{"kind": "cleanup", "targets": ["jobs"]} for _ in range(count)]


def wait_ended(counter: redis.Redis, total: int, timeout: float) -> int:
    """Block until ``total`` more jobs ended than when called; the ZCARD calls made meanwhile."""
    indexes = [f"aj:status:{s.value}" for s in JobStatus if s.ended]

    def ended() -> int:
        pipe = counter.pipeline(transaction=False)
        for key in indexes:
            pipe.zcard(key)
        return sum(int(n) for n in pipe.execute())

    start, polls = ended(), len(indexes)
    deadline = time.monotonic() + timeout
    while ended() - start < total:
        polls += len(indexes)
        if time.monotonic() > deadline:
            raise RuntimeError(f"only {ended() - start} of {total} jobs ended within {timeout:.0f} s")
        time.sleep(0.5)
    return polls + len(indexes)


def measure_kind(
    label: str,
    requests: list[dict[str, Any]],
    jobs: Jobs,
    servers: dict[str, redis.Redis],
    idle: dict[str, Rate],
    timeout: float,
) -> dict[str, Any]:
    """Submit ``requests`` at once, wait for all to end; each server's net cost per job."""
    before = {role: Snapshot.of(client) for role, client in servers.items()}
    began = time.monotonic()
    jobs.submit_many(requests)
    waited = wait_ended(servers["store"], len(requests), timeout)
    wall = time.monotonic() - began
    row: dict[str, Any] = {"jobs": len(requests), "wall_s": round(wall, 2), "servers": {}}
    for role, client in servers.items():
        calls, cpu, elapsed = Snapshot.of(client).minus(before[role])
        idle_calls, idle_cpu = idle[role].over(elapsed)
        if role == "store":
            calls["zcard"] = calls.get("zcard", 0) - waited
        net = {k: max(v - idle_calls.get(k, 0.0), 0.0) for k, v in calls.items()}
        per_job = {k: round(v / len(requests), 2) for k, v in sorted(net.items(), key=lambda kv: -kv[1])}
        row["servers"][role] = {
            "commands_per_job": round(sum(net.values()) / len(requests), 1),
            "cpu_ms_per_job": round(max(cpu - idle_cpu, 0.0) * 1000 / len(requests), 3),
            "raw_commands": sum(calls.values()),
            "idle_commands_taken_off": round(sum(idle_calls.values())),
            "by_command": {k: v for k, v in per_job.items() if v >= 0.05},
        }
    stores, brokers = row["servers"]["store"], row["servers"]["broker"]
    row["commands_per_job"] = round(stores["commands_per_job"] + brokers["commands_per_job"], 1)
    row["cpu_ms_per_job"] = round(stores["cpu_ms_per_job"] + brokers["cpu_ms_per_job"], 3)
    say(f"{label}: {row['commands_per_job']} commands, {row['cpu_ms_per_job']} ms of Redis CPU a job")
    return row


def start_worker(env: dict[str, str], log: Path) -> Any:
    """A worker with its poll loop, pinned off the emulator's core; returns once it is ready."""
    import subprocess

    cmd = [sys.executable, "-m", "celery", "-A", "worker.app", "worker", "--loglevel=INFO",
           f"--logfile={log}", "--without-mingle", "--without-gossip"]  # fmt: skip
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, preexec_fn=pin_to(contender_cores()),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    deadline = time.monotonic() + 60
    while "ready." not in (log.read_text(errors="replace") if log.exists() else ""):
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"worker did not start; see {log}")
        time.sleep(0.1)
    return proc


def measure(runs: int, indexes: int, cleanups: int, run_s: float, long_run_s: float) -> dict[str, Any]:
    """Every kind's cost, with the emulator profile and settings used."""
    profile = {
        "seed": 5,
        "run_duration": {"kind": "fixed", "value": run_s},
        "response_duration": {"kind": "fixed", "value": run_s},
        "file_index_duration": {"kind": "uniform", "min": 0.5, "max": 1.5},
        "poll_after_ms": 1000,
    }
    with ExitStack() as stack:
        base_url, admin = stack.enter_context(emulator(profile))
        store_url, broker_url = stack.enter_context(private_redis()), stack.enter_context(private_redis())
        folder = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        env = clean_env(AJ_REDIS_URL=store_url, AJ_BROKER_URL=broker_url, OPENAI_BASE_URL=base_url,
                        OPENAI_API_KEY=API_KEY)  # fmt: skip
        worker = start_worker(env, folder / "worker.log")
        stack.callback(stop, worker, 60)
        settings = Settings(redis_url=store_url, broker_url=broker_url)
        jobs = Jobs(settings, celery=create_app(settings))
        servers = {"store": redis.Redis.from_url(store_url), "broker": redis.Redis.from_url(broker_url)}
        time.sleep(3)  # the worker's start-up writes are not its idle cost
        idle = {role: idle_rate(client, IDLE_S) for role, client in servers.items()}
        say(f"idle worker: {sum(idle['store'].calls.values()) + sum(idle['broker'].calls.values()):.0f} "
            "commands/s")  # fmt: skip
        kinds: dict[str, tuple[Callable[[], list[dict[str, Any]]], float | None]] = {
            "run": (lambda: run_requests(runs), run_s),
            "run (long)": (lambda: run_requests(runs if long_run_s else 0), long_run_s),
            "index": (lambda: index_requests(indexes, folder), None),
            "cleanup": (lambda: cleanup_requests(cleanups), None),
        }
        rows: dict[str, Any] = {}
        for kind, (make, duration) in kinds.items():
            requests = make()
            if not requests:
                continue
            if duration is not None:
                admin.update_profile(response_duration={"kind": "fixed", "value": duration})
            admin.reset_counters()
            rows[kind] = measure_kind(kind, requests, jobs, servers, idle, timeout=600)
            if duration is not None:
                retrieves = int(admin.counters()["requests"].get("GET /v1/responses/{response_id}", 0))
                rows[kind].update(run_s=duration, retrieves_per_run=round(retrieves / len(requests), 2))
        return {
            "profile": profile,
            "settings": "Default settings (first poll at 1 s, x1.5, at most 2 s), one worker (concurrency 2)",
            "idle_commands_per_s": {role: round(sum(rate.calls.values()), 1) for role, rate in idle.items()},
            "idle_cpu_ms_per_s": {role: round(rate.cpu_s * 1000, 2) for role, rate in idle.items()},
            "kinds": rows,
        }


def table(result: dict[str, Any]) -> str:
    """The results as markdown (bench/report.py puts them in RESULTS.md)."""
    lines = [
        "| kind | jobs | Redis commands a job (store + broker) | Redis CPU a job (ms) | top commands a job |",
        "|---|---:|---:|---:|---|",
    ]
    for kind, row in result["kinds"].items():
        store, broker = row["servers"]["store"], row["servers"]["broker"]
        top = ", ".join(f"{k} {v}" for k, v in list(store["by_command"].items())[:5])
        lines.append(
            f"| {kind} | {row['jobs']:,} | {row['commands_per_job']} ({store['commands_per_job']} + "
            f"{broker['commands_per_job']}) | {row['cpu_ms_per_job']} ({store['cpu_ms_per_job']} + "
            f"{broker['cpu_ms_per_job']}) | {top} |"
        )
    short, long = result["kinds"].get("run"), result["kinds"].get("run (long)")
    for row in (short, long):
        if row:
            lines.append(f"{'' if row is long else chr(10)}Runs of {row['run_s']:g} s were polled"
                         f" {row['retrieves_per_run']} times a run.")  # fmt: skip
    if short and long and long["retrieves_per_run"] > short["retrieves_per_run"]:
        polls = long["retrieves_per_run"] - short["retrieves_per_run"]
        per_poll = (long["commands_per_job"] - short["commands_per_job"]) / polls
        cpu_per_poll = (long["cpu_ms_per_job"] - short["cpu_ms_per_job"]) / polls
        fixed = short["cpu_ms_per_job"] - cpu_per_poll * short["retrieves_per_run"]
        lines.append(
            f"Each further poll of a run cost {per_poll:.1f} commands and {cpu_per_poll:.3f} ms of Redis CPU;"
            f" what a run costs besides its polls, about {fixed:.2f} ms."
        )
    idle, idle_cpu = result["idle_commands_per_s"], result["idle_cpu_ms_per_s"]
    lines += [
        "",
        f"An idle worker costs {idle['store']} commands/s on the store and {idle['broker']} on the broker"
        f" ({idle_cpu['store']} + {idle_cpu['broker']} ms of CPU a second), taken off the figures above.",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    """Measure, write the results file and RESULTS.md, print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=300)
    parser.add_argument("--indexes", type=int, default=40)
    parser.add_argument("--cleanups", type=int, default=40)
    parser.add_argument("--run-s", type=float, default=6.0, help="how long each run lasts")
    parser.add_argument("--long-run-s", type=float, default=20.0, help="the long runs (0: none)")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR)
    args = parser.parse_args(argv)
    command = "python -m bench.redis_cost " + " ".join(sys.argv[1:] if argv is None else argv)
    result = {
        "command": command.strip(),
        **measure(args.runs, args.indexes, args.cleanups, args.run_s, args.long_run_s),
    }
    write_result(args.out, "redis_cost", result)
    from bench.report import write

    write(args.out, ROOT / "bench" / "RESULTS.md")
    print(table(result))


if __name__ == "__main__":
    main()
