"""The chaos soak: ``python -m bench.chaos [--jobs 2000]`` (``make chaos``).

Starts a private Redis with AOF, the emulator in this process, worker processes and a beat; submits a mix
of jobs of every kind over the first part of the run while it SIGKILLs a random worker every 20 s (starting
a replacement), SIGKILLs Redis and starts it again twice, and has the emulator inject faults (429 with
Retry-After, 503, dropped connections, and answers dropped after a create took effect). Then it waits,
bounded, for every job to end and checks: every job ended, one remote run per assistants job, at most one
orphan response per create on the responses backend (each orphan is cancelled), no job ended twice, sweeps
fired after each Redis restart. It writes ``bench/results/chaos.json`` and the "Chaos soak" section of
``bench/RESULTS.md``, prints a summary, and exits 1 when a check fails.
"""

from __future__ import annotations

import argparse
import json
import random
import shlex
import sys
import tempfile
import time
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import openai

from bench import chaos_checks as checks
from bench import report
from bench.chaos_checks import Restart
from bench.chaos_cluster import SOAK_ENV, Cluster, beat_sweeps
from bench.chaos_load import WEIGHTS, Submitter, make_shared, plan, variants
from bench.chaos_orphans import Timeline, orphans
from bench.chaos_report import summary_lines
from bench.chaos_watch import DOWN, EventLog, FaultPlan, FaultRotator, Monitor, Trail
from bench.common import RESULTS_DIR, machine_facts, say
from emulator.profile import Distribution, Profile
from emulator.server import EmulatorHandle, running_emulator
from schemas.job import JobRecord
from tasks.assistants import quiet_assistants_deprecation
from worker.app import create_app
from worker.client import Jobs
from worker.connections import make_store
from worker.settings import Settings

API_KEY = "sk-chaos"


def profile(seed: int) -> Profile:
    """Runs and responses of 2-8 s, files indexed in under a second, polls asked every second."""
    return Profile(
        seed=seed,
        run_duration=Distribution(kind="uniform", min=2.0, max=8.0),
        response_duration=Distribution(kind="uniform", min=2.0, max=8.0),
        file_index_duration=Distribution(kind="uniform", min=0.2, max=1.0),
        poll_after_ms=1000,
    )


def parse(argv: list[str] | None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(prog="python -m bench.chaos", description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=2000, help="jobs to submit (default 2000)")
    parser.add_argument(
        "--submit-over", type=float, help="seconds to spread them over (default 0.15 s a job, at least 60)"
    )
    parser.add_argument("--workers", type=int, default=3, help="worker processes (default 3)")
    parser.add_argument("--concurrency", type=int, default=2, help="pool processes per worker (default 2)")
    parser.add_argument(
        "--kill-every", type=float, default=20.0, help="seconds between worker kills (default 20)"
    )
    parser.add_argument(
        "--redis-restarts", type=int, default=2, help="Redis kills, spread over the submit window"
    )
    parser.add_argument("--redis-down", type=float, default=3.0, help="seconds Redis stays down (default 3)")
    parser.add_argument(
        "--wait", type=float, default=1200.0, help="longest wait for the jobs after submitting"
    )
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", type=Path, default=RESULTS_DIR, help="where chaos.json goes")
    parser.add_argument("--logs", type=Path, help="log directory (default: a new one under /tmp)")
    args = parser.parse_args(argv)
    if args.submit_over is None:
        args.submit_over = max(60.0, 0.15 * args.jobs)
    return args


class Soak:
    """One soak: what it started, what it submitted, what it did to the processes, what it saw."""

    def __init__(self, args: argparse.Namespace, emulator: EmulatorHandle, cluster: Cluster):
        self.args = args
        self.emulator = emulator
        self.cluster = cluster
        self.rng = random.Random(args.seed)
        settings = Settings(redis_url=cluster.redis.url, broker_url=cluster.redis.url)
        self.settings = settings
        self.jobs = Jobs(settings, celery=create_app(settings))
        self.api = openai.OpenAI(base_url=emulator.base_url, api_key=API_KEY, max_retries=5)
        self.events = EventLog(Jobs(settings, celery=create_app(settings)))
        queues = [
            settings.queue_runs_active,
            settings.queue_runs,
            settings.queue_indexing,
            settings.queue_maintenance,
        ]
        self.monitor = Monitor(make_store(settings), queues)
        self.faults = FaultRotator(emulator, FaultPlan(), args.seed)
        self.restarts: list[Restart] = []
        self.began = time.time()

    def run(self) -> dict[str, Any]:
        """Submit, break things while the jobs run, wait for them, and return the figures."""
        quiet_assistants_deprecation()
        drawn = variants(self.args.jobs, self.rng)
        shared = make_shared(self.api, self.emulator, drawn, self.args.logs / "docs")
        submitter = Submitter(self.jobs, plan(drawn, shared, self.args.seed), self.args.submit_over)
        for thread in (self.events, self.monitor, self.faults):
            thread.start()
        self.began = time.time()
        submitter.start()
        say(f"chaos: {len(drawn):,} jobs over {self.args.submit_over:.0f} s; logs in {self.args.logs}")
        self._break_things(submitter)
        self.faults.halt.set()
        self.faults.join(10)
        finished = time.time()
        time.sleep(2)  # the event reader catches up with the last ends
        for thread in (self.events, self.monitor):
            thread.halt.set()
        return self._figures(submitter, finished)

    def _break_things(self, submitter: Submitter) -> None:
        """Kill workers and Redis on their schedule until every submitted job ended or the wait ran out."""
        args = self.args
        restart_at = [
            self.began + args.submit_over * (k + 1) / (args.redis_restarts + 1)
            for k in range(args.redis_restarts)
        ]
        next_kill = self.began + args.kill_every
        last_note = 0.0
        while True:
            now = time.time()
            submitted = set(submitter.submitted)
            ended = self.events.ended(submitted)
            if not submitter.is_alive() and ended == len(submitted):
                break
            if submitter.finished_at and now > submitter.finished_at + args.wait:
                say("chaos: the wait ran out with jobs not ended")
                break
            if restart_at and now >= restart_at[0]:
                restart_at.pop(0)
                self._restart_redis()
            elif now >= next_kill:
                next_kill += args.kill_every
                kill = self.cluster.kill_random_worker()
                if kill:
                    say(f"chaos: SIGKILLed {kill.worker} (pid {kill.pid}); started {kill.replacement}")
            for worker in self.cluster.live_workers():
                worker.ready()
            for worker in self.cluster.replace_exited():
                say(f"chaos: {worker.name} exited by itself (code {worker.proc.poll()}); started another")
            if now - last_note >= 10:
                last_note = now
                self._note(len(submitted), ended)
            time.sleep(0.2)

    def _restart_redis(self) -> None:
        killed = time.time()
        self.cluster.redis.kill()
        say(f"chaos: SIGKILLed Redis; starting it again in {self.args.redis_down:.0f} s")
        time.sleep(self.args.redis_down)
        self.cluster.redis.start()
        self.restarts.append(Restart(killed, time.time()))
        say("chaos: Redis is back (same port, same AOF)")

    def _note(self, submitted: int, ended: int) -> None:
        last = self.monitor.samples[-1] if self.monitor.samples else {}
        lag = "down" if last.get("down") else f"{last.get('lag', 0.0):.1f} s"
        say(
            f"chaos: {submitted:,}/{self.args.jobs:,} submitted, {ended:,} ended,"
            f" {len(self.cluster.kills)} kills, {len(self.restarts)} Redis restarts, schedule lag {lag},"
            f" load {last.get('load1', 0.0):.1f}, {time.time() - self.began:.0f} s"
        )

    def _records(self, job_ids: list[str]) -> dict[str, JobRecord | None]:
        for _ in range(20):
            try:
                return dict(zip(job_ids, self.jobs.store.jobs.get_many(job_ids), strict=True))
            except DOWN:
                time.sleep(1)
        raise RuntimeError("Redis did not answer after the soak")

    def _figures(self, submitter: Submitter, finished: float) -> dict[str, Any]:
        subs = submitter.submitted
        records = self._records(list(subs))
        trails = self.events.snapshot()
        counters = self.emulator.counters()
        self._dump(records, trails)
        timeline = Timeline([k.at for k in self.cluster.kills], self.restarts, self.faults.window_at)
        dead = self.jobs.dead(1000)
        result: dict[str, Any] = {
            "command": " ".join(["python -m bench.chaos", shlex.join(sys.argv[1:])]).strip(),
            "measured_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "machine": machine_facts(),
            "settings": self._settings(),
            "began_at": round(self.began, 3),
            "wall_s": round(finished - self.began, 1),
            "submit_s": round((submitter.finished_at or finished) - submitter.began, 1),
            "jobs": checks.jobs(submitter, records, trails),
            "kills": self._kills(),
            "redis_restarts": [
                {"at_s": round(r.killed_at - self.began, 1), **row}
                for r, row in zip(
                    self.restarts, checks.recovery(self.restarts, trails, self.monitor.samples), strict=True
                )
            ],
            "stalls": checks.stalls(trails, subs, finished),
            "redrives": checks.redrives(
                trails, subs, records, [k.at for k in self.cluster.kills], self.restarts
            ),
            "dead_letters": {
                "count": len(dead),
                "codes": _count(r.error.code if r.error else "?" for r in dead),
            },
            "ended_twice": checks.ended_twice(trails),
            "runs_per_job": checks.runs_per_job(subs, records, counters),
            "orphans": orphans(subs, records, counters, self.api, self.emulator, timeline),
            "sweeps": checks.sweeps(trails, subs, self.restarts, finished, beat_sweeps(self.args.logs)),
            "cleanup_target_errors": checks.cleanup_target_errors(records),
            "faults": _faults(counters),
            "uploads_twice": {n: c for n, c in counters.get("uploads_per_filename", {}).items() if c > 1},
            "load_avg": _load(self.monitor.samples),
            "peak_queue_lengths": self.monitor.peak_queues(),
            "logs": str(self.args.logs),
        }
        found = checks.checks(result)
        result["checks"] = [asdict(c) for c in found]
        result["passed"] = all(c.ok for c in found)
        return result

    def _kills(self) -> dict[str, Any]:
        return {
            "count": len(self.cluster.kills),
            "at_s": [round(k.at - self.began, 1) for k in self.cluster.kills],
            "killed": [k.worker for k in self.cluster.kills],
            "workers": self.cluster.worker_facts(),
            "beat_alive": bool(self.cluster.beat and self.cluster.beat.poll() is None),
            "exited_on_their_own": self._self_exits(),
            "replaced_after_exiting": self.cluster.exited,
        }

    def _dump(self, records: dict[str, JobRecord | None], trails: dict[str, Trail]) -> None:
        """Every record and every job's events, and what the soak did when, into the log directory, so
        that any job can be looked into once Redis is gone."""
        logs = self.args.logs
        with (logs / "records.jsonl").open("w") as out:
            for record in records.values():
                if record is not None:
                    out.write(record.model_dump_json() + "\n")
        with (logs / "events.jsonl").open("w") as out:
            for job_id, trail in trails.items():
                out.write(json.dumps({"job_id": job_id, "kind": trail.kind, "events": trail.events}) + "\n")
        timeline = {
            "began_at": self.began,
            "kills": [asdict(k) for k in self.cluster.kills],
            "redis_restarts": [asdict(r) for r in self.restarts],
            "fault_windows": self.faults.windows,
        }
        (logs / "timeline.json").write_text(json.dumps(timeline, indent=1) + "\n")
        with (logs / "samples.jsonl").open("w") as out:
            for sample in self.monitor.samples:
                out.write(json.dumps(sample) + "\n")

    def _self_exits(self) -> list[str]:
        killed = {k.worker for k in self.cluster.kills}
        return [
            f"{w.name} (exit code {w.proc.poll()})"
            for w in self.cluster.workers
            if w.name not in killed and not w.alive()
        ]

    def _settings(self) -> dict[str, Any]:
        args = self.args
        return {
            "jobs": args.jobs,
            "submit_over_s": args.submit_over,
            "workers": args.workers,
            "concurrency": args.concurrency,
            "kill_every_s": args.kill_every,
            "redis_restarts": args.redis_restarts,
            "redis_down_s": args.redis_down,
            "wait_bound_s": args.wait,
            "seed": args.seed,
            "env": SOAK_ENV,
            "mix": WEIGHTS,
            "faults": asdict(self.faults.plan),
            "profile": self.emulator.profile().model_dump(
                include={"seed", "run_duration", "response_duration", "file_index_duration", "poll_after_ms"}
            ),
        }


def _count(values: Any) -> dict[str, int]:
    out: dict[str, int] = {}
    for v in values:
        out[v] = out.get(v, 0) + 1
    return out


def _faults(counters: dict[str, Any]) -> dict[str, Any]:
    injected: dict[str, int] = counters.get("faults", {})
    total = int(counters.get("total", 0))
    return {
        "requests": total,
        "injected": injected,
        "share": round(sum(injected.values()) / total, 4) if total else 0.0,
    }


def _load(samples: list[dict[str, Any]]) -> dict[str, Any]:
    loads = [s["load1"] for s in samples]
    if not loads:
        return {}
    return {
        "start": round(loads[0], 2),
        "mean": round(sum(loads) / len(loads), 2),
        "max": round(max(loads), 2),
        "end": round(loads[-1], 2),
    }


def main(argv: list[str] | None = None) -> int:
    """Run the soak; write and print its figures; 0 when every check passed, 1 otherwise."""
    args = parse(argv)
    args.logs = args.logs or Path(tempfile.mkdtemp(prefix="aj-chaos-"))
    args.logs.mkdir(parents=True, exist_ok=True)
    with running_emulator(profile(args.seed), api_key=API_KEY) as emulator:
        cluster = Cluster(args.logs, emulator.base_url, API_KEY, args.concurrency, random.Random(args.seed))
        try:
            cluster.start(args.workers)
            result = Soak(args, emulator, cluster).run()
        finally:
            cluster.stop()
    args.out.mkdir(parents=True, exist_ok=True)
    # The full soak's figures are chaos.json; a smaller one's keep their size in the name.
    path = args.out / ("chaos.json" if args.jobs >= 2000 else f"chaos-{args.jobs}.json")
    path.write_text(json.dumps(result, indent=1) + "\n")
    say(f"figures written: {path}")
    if args.out.resolve() == RESULTS_DIR.resolve():
        say(f"report written: {report.write(args.out, RESULTS_DIR.parent / 'RESULTS.md')}")
    print("\n".join(summary_lines(result)))
    return 0 if result["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
