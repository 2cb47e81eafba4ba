"""How long ``ajobs status JOB_ID`` takes from a shell, end to end (interpreter start, imports, one Redis
read, the output): the median of N timed subprocess runs (not hyperfine, which runs one command's runs
after the other's: here the variants alternate, so a load that changes meanwhile weighs on each the same).

    .venv/bin/python bench/cli_startup.py [--runs 30] [--before REV]

``--before REV`` also measures the CLI of a git revision (exported to a temporary directory and run with
this checkout's virtualenv), so the figure before a change sits beside the one after it. Each is measured
twice: with bytecode caches (as ``pip install`` leaves them; kept in a temporary PYTHONPYCACHEPREFIX, so
nothing is written into the checkout or the virtualenv) and without (PYTHONDONTWRITEBYTECODE=1 and an empty
cache: every module compiled at each start). It starts a private Redis with one job in it and writes
``bench/results/cli_startup.json``; ``python -m bench.report`` puts the table into RESULTS.md.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "results" / "cli_startup.json"
COMMAND = ["-m", "worker.cli", "status"]
"""What is timed, after the interpreter: ``python -m worker.cli status JOB_ID`` (the ``ajobs`` script runs
the same ``main``)."""


def _env(redis_url: str, cached: bool, prefix: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AJ_", "OPENAI_", "PYTHON"))}
    env.update(AJ_REDIS_URL=redis_url, PYTHONPYCACHEPREFIX=prefix)
    if not cached:
        env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


def _run(argv: list[str], env: dict[str, str], cwd: Path) -> tuple[float, float]:
    """One run: wall seconds, and CPU seconds (user + system) of the child."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(argv, env=env, cwd=cwd, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed: {done.stderr.strip()}")
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def _summary(walls: list[float], cpus: list[float]) -> dict[str, float]:
    return {
        "median_s": statistics.median(walls),
        "min_s": min(walls),
        "max_s": max(walls),
        "cpu_median_s": statistics.median(cpus),
    }


FLOOR = ["-c", "import click, pydantic_settings, redis, schemas.job"]
"""The libraries any read needs, imported and nothing done: the floor under ``ajobs status``."""


def measure(
    sources: dict[str, Path], redis_url: str, job_id: str, runs: int, floor: str | None = None
) -> dict[str, Any]:
    """``ajobs status`` of the code in each of ``sources`` (and, named ``floor``, the bare imports of the
    libraries it needs), with and without bytecode caches. The variants' runs alternate (one of each,
    ``runs`` times), so a machine whose load changes meanwhile weighs on each the same."""
    commands = {name: [sys.executable, *COMMAND, job_id] for name in sources}
    if floor is not None:
        sources = {**sources, floor: ROOT}
        commands[floor] = [sys.executable, *FLOOR]
    found: dict[str, Any] = {name: {} for name in sources}
    for cached in (True, False):
        with tempfile.TemporaryDirectory(prefix="aj-pyc-") as prefix:
            envs = {}
            for name, source in sources.items():
                env = _env(redis_url, cached, str(Path(prefix) / name))
                env["PYTHONPATH"] = str(source)  # ahead of the editable install's finder
                envs[name] = env
                if cached:  # the warm-up writes the caches the timed runs read
                    _run(commands[name], env, source)
            samples: dict[str, tuple[list[float], list[float]]] = {name: ([], []) for name in sources}
            for _ in range(runs):
                for name, source in sources.items():
                    wall, cpu = _run(commands[name], envs[name], source)
                    samples[name][0].append(wall)
                    samples[name][1].append(cpu)
            for name, (walls, cpus) in samples.items():
                found[name]["cached" if cached else "uncached"] = _summary(walls, cpus)
    return found


@contextmanager
def exported(rev: str) -> Iterator[Path]:
    """The tree of git revision ``rev`` in a temporary directory."""
    with tempfile.TemporaryDirectory(prefix="aj-rev-") as tmp:
        archive = subprocess.run(["git", "archive", rev], cwd=ROOT, capture_output=True, check=True).stdout
        subprocess.run(["tar", "-x", "-C", tmp], input=archive, check=True)
        yield Path(tmp)


def _job(redis_url: str) -> str:
    """A job to read: a dry-run clean-up, written with the store alone (no broker, no worker)."""
    sys.path.insert(0, str(ROOT))
    import redis

    from schemas.job import JobKind, JobRecord
    from worker.polls import TaskDue
    from worker.store import NewJob, Store, new_job_id

    now = time.time()
    record = JobRecord(
        id=new_job_id(),
        kind=JobKind.CLEANUP,
        request={"kind": "cleanup", "dry_run": True},
        created_at=now,
        updated_at=now,
    )
    store = Store.on(redis.Redis.from_url(redis_url), result_ttl=3600, idempotency_ttl=60, events_maxlen=1000)
    store.jobs.submit([NewJob(record, None, TaskDue("aj.cleanup.start", [[record.id]]), "bench")], 3600)
    store.redis.close()
    return record.id


def table(data: dict[str, Any]) -> str:
    """The RESULTS.md table of a ``cli_startup.json``."""
    lines = [
        "| code | bytecode cached: median wall (min-max) / CPU | no bytecode cache: median wall / CPU |",
        "|---|---:|---:|",
    ]
    for name, found in data["measured"].items():
        cached, uncached = found["cached"], found["uncached"]
        lines.append(
            f"| {name} | {cached['median_s'] * 1000:.0f} ms ({cached['min_s'] * 1000:.0f}-"
            f"{cached['max_s'] * 1000:.0f}) / {cached['cpu_median_s'] * 1000:.0f} ms "
            f"| {uncached['median_s'] * 1000:.0f} ms / {uncached['cpu_median_s'] * 1000:.0f} ms |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    """Measure, write the JSON, print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=30, help="runs per measurement (default 30)")
    parser.add_argument("--before", help="a git revision to measure too (e.g. the commit before a change)")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(ROOT))
    from devkit.redis_server import private_redis

    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    after = f"after ({head.stdout.strip() or 'working tree'})"
    with private_redis() as url, contextlib.ExitStack() as stack:
        job_id = _job(url)
        sources = {after: ROOT}
        if args.before:
            sources = {f"before ({args.before[:10]})": stack.enter_context(exported(args.before)), **sources}
        measured = measure(
            sources,
            url,
            job_id,
            args.runs,
            floor="floor: importing click, pydantic-settings, redis and the record model",
        )
    data = {
        "command": f".venv/bin/python bench/cli_startup.py --runs {args.runs}"
        + (f" --before {args.before}" if args.before else ""),
        "timed": "python -m worker.cli status JOB_ID (one job in a private Redis)",
        "tool": "timed subprocess runs, the variants alternating",
        "runs": args.runs,
        "machine": {
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "load_average": os.getloadavg(),
        },
        "measured": measured,
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(data, indent=2) + "\n")
    print(table(data))


if __name__ == "__main__":
    main()
