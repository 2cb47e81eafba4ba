"""The three S1 contenders, each against a fresh emulator and a fresh private Redis, one at a time.

Each returns the same figures: per run, when the contender learnt the run ended (its *end*), the emulator's
precise ``completed_at`` (the truth) and the run's emulated duration; the emulator's request counters;
the wall time to drain; CPU seconds and peak RSS of the contender's processes.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import openai
import redis

from bench import naive_celery
from bench.common import (
    API_KEY,
    ROOT,
    Progress,
    TreeSampler,
    clean_env,
    contender_cores,
    emulator,
    percentiles,
    pin_to,
    say,
    stop,
)
from devkit.redis_server import private_redis
from emulator.admin_client import EmulatorAdmin
from schemas.job import JobStatus
from tasks.assistants import quiet_assistants_deprecation
from worker.app import create_app
from worker.client import Jobs
from worker.settings import Settings

RETRIEVE_ROUTE = "GET /v1/threads/{thread_id}/runs/{run_id}"
SEED_THREAD_CAP = 3000
"""Most threads the seed pattern gets: above this, Python threads and the SDK's pool (1,000 connections)
are the limit already measured (measured before this bench existed: p95 33 s at 3,000)."""


@dataclass
class Trial:
    """What one contender measured at one size."""

    contender: str
    runs: int
    submitted_at: float
    ends: dict[str, float] = field(default_factory=dict)
    """run id -> when the contender learnt the run ended (unix seconds)."""
    statuses: dict[str, int] = field(default_factory=dict)
    wall_s: float = 0.0
    cpu_s: float = 0.0
    peak_rss_mb: float = 0.0
    counters: dict[str, Any] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def _assistant(base_url: str) -> str:
    client = openai.OpenAI(base_url=base_url, api_key=API_KEY)
    try:
        quiet_assistants_deprecation()
        return client.beta.assistants.create(model="gpt-4o", name="bench").id
    finally:
        client.close()


def _wait_ready(proc: subprocess.Popen[bytes], log: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while "ready." not in (log.read_text(errors="replace") if log.exists() else ""):
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"worker did not start; see {log}")
        time.sleep(0.1)


def _celery_worker(app: str, env: dict[str, str], log: Path, *extra: str) -> subprocess.Popen[bytes]:
    cmd = [sys.executable, "-m", "celery", "-A", app, "worker", "--loglevel=INFO", f"--logfile={log}", *extra]
    proc = subprocess.Popen(
        cmd,
        cwd=ROOT,
        env=env,
        preexec_fn=pin_to(contender_cores()),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    _wait_ready(proc, log)
    return proc


def _drain(progress: Progress, count: Callable[[], int], total: int, timeout: float) -> int:
    deadline = time.monotonic() + timeout
    done = count()
    while done < total and time.monotonic() < deadline:
        time.sleep(0.25)
        done = count()
        progress.update(done)
    progress.update(done, force=True)
    return done


def _run_request(assistant_id: str, index: int) -> dict[str, Any]:
    return {
        "kind": "run",
        "backend": "assistants",
        "assistant_id": assistant_id,
        "messages": [{"role": "user", "content": f"question {index}"}],
    }


class _EndReader(threading.Thread):
    """Reads the event stream as another service would (XREAD), noting each job's end event."""

    def __init__(self, jobs: Jobs):
        super().__init__(name="bench-events", daemon=True)
        self.jobs = jobs
        self.ended: dict[str, tuple[float, float, str]] = {}
        """job id -> (event's `at`, time this reader got it, end status)."""
        self.halt = threading.Event()

    def run(self) -> None:
        last = "0-0"
        while not self.halt.is_set():
            events = self.jobs.events(last, block_ms=500, count=1000)
            seen = time.time()
            for event in events:
                last = event.stream_id
                if event.status.ended:
                    self.ended[event.job_id] = (event.at, seen, event.status.value)


def ours(profile: dict[str, Any], runs: int, policy: dict[str, str], timeout: float, workdir: Path) -> Trial:
    """This system: ``celery -A worker.app worker`` (default concurrency), jobs from ``submit_many``,
    ends read from the event stream."""
    with emulator(profile) as (base_url, admin), private_redis() as redis_url:
        assistant_id = _assistant(base_url)
        env = clean_env(AJ_REDIS_URL=redis_url, OPENAI_BASE_URL=base_url, OPENAI_API_KEY=API_KEY, **policy)
        worker = _celery_worker("worker.app", env, workdir / f"ours-{runs}.log")
        settings = Settings(redis_url=redis_url)
        jobs = Jobs(settings, celery=create_app(settings))
        reader = _EndReader(jobs)
        reader.start()
        try:
            admin.reset_counters()
            requests = [_run_request(assistant_id, i) for i in range(runs)]
            trial = Trial("ours", runs, time.time(), settings=dict(policy))
            with TreeSampler(worker.pid) as sampler:
                began = time.monotonic()
                refs = jobs.submit_many(requests)
                _drain(Progress(f"ours {runs:,}", runs), lambda: len(reader.ended), runs, timeout)
                trial.wall_s = time.monotonic() - began
            trial.counters = admin.counters()
        finally:
            reader.halt.set()
            reader.join(5)
            stop(worker, 60)
        records = jobs.store.jobs.get_many([r.id for r in refs])
        for ref, record in zip(refs, records, strict=True):
            end = reader.ended.get(ref.id)
            status = end[2] if end else (record.status.value if record else "missing")
            trial.statuses[status] = trial.statuses.get(status, 0) + 1
            run_id = record.remote.get("run_id") if record else None
            if end and run_id and status == JobStatus.COMPLETED.value:
                trial.ends[run_id] = end[0]
        seen = [end[1] - end[0] for end in reader.ended.values()]
        trial.settings["event_read_delay_s"] = percentiles(seen)
        trial.cpu_s, trial.peak_rss_mb = sampler.cpu_s, sampler.peak_rss / 2**20
        jobs.store.redis.close()
        return _with_truth(trial, admin_runs(admin))


def seed(profile: dict[str, Any], runs: int, timeout: float, workdir: Path) -> Trial:
    """The seed pattern in its own process: a thread per run in flight, up to `SEED_THREAD_CAP`."""
    threads = min(runs, SEED_THREAD_CAP)
    with emulator(profile) as (base_url, admin):
        assistant_id = _assistant(base_url)
        admin.reset_counters()
        out = workdir / f"seed-{runs}.json"
        cmd = [sys.executable, "-m", "bench.seed_pattern", "--base-url", base_url, "--api-key", API_KEY]
        cmd += [
            "--assistant",
            assistant_id,
            "--runs",
            str(runs),
            "--threads",
            str(threads),
            "--out",
            str(out),
        ]
        trial = Trial("seed", runs, time.time(), settings={"threads": threads})
        if threads < runs:
            trial.notes.append(f"threads capped at {threads:,} for {runs:,} runs")
        began = time.monotonic()
        proc = subprocess.Popen(cmd, cwd=ROOT, env=clean_env(), preexec_fn=pin_to(contender_cores()))
        with TreeSampler(proc.pid) as sampler:
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                trial.notes.append(f"stopped after {timeout:.0f} s")
                stop(proc)
        trial.wall_s = time.monotonic() - began
        trial.cpu_s, trial.peak_rss_mb = sampler.cpu_s, sampler.peak_rss / 2**20
        trial.counters = admin.counters()
        body = json.loads(out.read_text()) if out.exists() else {"runs": [], "error_count": runs}
        for row in body["runs"]:
            trial.statuses[row["status"]] = trial.statuses.get(row["status"], 0) + 1
            if row["status"] == "completed":
                trial.ends[row["run_id"]] = row["end"]
        if body.get("error_count"):
            trial.statuses["error"] = body["error_count"]
            trial.notes.append(f"errors: {body.get('errors', [])[:3]}")
        return _with_truth(trial, admin_runs(admin))


def naive(profile: dict[str, Any], runs: int, timeout: float, workdir: Path, concurrency: int = 100) -> Trial:
    """Naive Celery: a task per run calling ``create_and_poll`` on a threads pool of ``concurrency``."""
    with emulator(profile) as (base_url, admin), private_redis() as redis_url:
        assistant_id = _assistant(base_url)
        env = clean_env(NAIVE_BROKER_URL=redis_url, OPENAI_BASE_URL=base_url, OPENAI_API_KEY=API_KEY)
        log = workdir / f"naive-{runs}.log"
        worker = _celery_worker(
            "bench.naive_celery", env, log, "--pool=threads", f"--concurrency={concurrency}"
        )
        producer = naive_celery.make_app(redis_url)
        ends = redis.Redis.from_url(redis_url)
        trial = Trial("naive", runs, time.time(), settings={"pool": "threads", "concurrency": concurrency})
        try:
            admin.reset_counters()
            with TreeSampler(worker.pid) as sampler:
                began = time.monotonic()
                with producer.connection_for_write() as conn:
                    for i in range(runs):
                        producer.send_task(naive_celery.TASK, args=[i, assistant_id], connection=conn)
                progress = Progress(f"naive celery {runs:,}", runs)
                _drain(progress, lambda: int(ends.hlen(naive_celery.ENDS_KEY)), runs, timeout)
                trial.wall_s = time.monotonic() - began
            trial.counters = admin.counters()
            rows = {k.decode(): json.loads(v) for k, v in ends.hgetall(naive_celery.ENDS_KEY).items()}
        finally:
            stop(worker, 60)
            ends.close()
        trial.cpu_s, trial.peak_rss_mb = sampler.cpu_s, sampler.peak_rss / 2**20
        for run_id, row in rows.items():
            trial.statuses[row["status"]] = trial.statuses.get(row["status"], 0) + 1
            if row["status"] == "completed":
                trial.ends[run_id] = row["end"]
        return _with_truth(trial, admin_runs(admin))


def admin_runs(admin: EmulatorAdmin) -> dict[str, dict[str, Any]]:
    """The emulator's precise details of every run, by id."""
    return {row["id"]: row for row in admin.runs()}


def _with_truth(trial: Trial, truth: dict[str, dict[str, Any]]) -> Trial:
    trial.settings["truth"] = truth
    return trial


def summarise(trial: Trial) -> dict[str, Any]:
    """The trial's figures: detection lag (end - completed_at), lag from submit (end - submit - the run's
    emulated duration, so time spent waiting for a free thread counts), requests, CPU and memory."""
    truth: dict[str, dict[str, Any]] = trial.settings.pop("truth", {})
    lags, from_submit = [], []
    by_bucket: dict[int, list[float]] = {}
    for run_id, end in trial.ends.items():
        row = truth.get(run_id) or {}
        completed = row.get("completed_at_precise")
        if completed is None:
            continue
        lags.append(end - completed)
        from_submit.append(end - trial.submitted_at - (completed - row["created_at_precise"]))
        by_bucket.setdefault(int((completed - trial.submitted_at) // 10) * 10, []).append(end - completed)
    created = [r["created_at_precise"] - trial.submitted_at for r in truth.values()]
    requests: dict[str, int] = trial.counters.get("requests", {})
    total = sum(requests.values())
    retrieves = requests.get(RETRIEVE_ROUTE, 0)
    detected = len(lags)
    return {
        "contender": trial.contender,
        "runs": trial.runs,
        "detected": detected,
        "lost": trial.runs - sum(trial.statuses.values()),
        "statuses": trial.statuses,
        "lag_s": percentiles(lags),
        "lag_from_submit_s": percentiles(from_submit),
        "run_created_after_submit_s": {**percentiles(created), "max": round(max(created, default=0), 3)},
        "peak_in_flight": peak_in_flight(truth.values()),
        "lag_p95_by_completion_s": {
            f"{start}-{start + 10}": percentiles(values)["p95"] for start, values in sorted(by_bucket.items())
        },
        "requests_per_run": round(total / trial.runs, 2),
        "retrieves_per_run": round(retrieves / trial.runs, 2),
        "requests": requests,
        "wall_s": round(trial.wall_s, 2),
        "retrieves_per_s": round(retrieves / trial.wall_s, 1) if trial.wall_s else None,
        "cpu_s": round(trial.cpu_s, 2),
        "cpu_ms_per_run": round(1000 * trial.cpu_s / trial.runs, 2),
        "peak_rss_mb": round(trial.peak_rss_mb, 1),
        "settings": trial.settings,
        "notes": trial.notes,
        "lags": [round(x, 4) for x in sorted(lags)],
    }


def peak_in_flight(rows: Iterable[dict[str, Any]]) -> int:
    """Most runs that existed and had not completed at one moment, by the emulator's clock."""
    steps = sorted(
        [(row["created_at_precise"], 1) for row in rows]
        + [(row["completed_at_precise"], -1) for row in rows if row.get("completed_at_precise")]
    )
    now = peak = 0
    for _, step in steps:
        now += step
        peak = max(peak, now)
    return peak


def trial_dir() -> Path:
    """A scratch directory for worker logs and the seed pattern's output."""
    path = Path(tempfile.mkdtemp(prefix="aj-bench-"))
    say(f"worker logs in {path}")
    return path
