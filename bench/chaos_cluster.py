"""The chaos soak's processes: a private Redis with AOF that it SIGKILLs and starts again, worker processes it
SIGKILLs and replaces, and one beat. Each process logs to a file of its own in the soak's log directory."""

from __future__ import annotations

import os
import random
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from bench.common import ROOT, clean_env
from devkit.redis_server import RedisServer

AJOBS = str(Path(sys.executable).parent / "ajobs")
"""The ``ajobs`` script of the interpreter running the soak (the project's virtualenv)."""

SOAK_ENV = {
    # Recovery within the run: the watchdog looks every 5 s, re-drives a job with no owner for 20 s, and a
    # message in flight for 40 s while its queues are empty (above the visibility timeout plus kombu's
    # 5 s restore sweep, so a killed worker's message comes back before it is judged lost).
    "AJ_WATCHDOG_EVERY": "5",
    "AJ_OWNERLESS_AFTER": "20",
    "AJ_STALL_AFTER": "40",
    "AJ_OUTBOX_GRACE": "3",
    # A killed worker's messages come back after 20 s, its polls after 10 s; every task's hard limit stays
    # below the visibility timeout, as start-up requires.
    "AJ_VISIBILITY_TIMEOUT": "20",
    "AJ_TASK_TIME_LIMIT": "15",
    "AJ_TASK_SOFT_TIME_LIMIT": "12",
    "AJ_POLL_LEASE": "10",
    "AJ_TOOL_MODULES": '["devkit.example_tools"]',
    "AJ_REQUIRE_DURABLE_REDIS": "true",
    # One short sweep, so that sweeps firing again after each Redis restart shows; the others off.
    "AJ_SWEEP_JOBS_S": "5",
    "AJ_SWEEP_THREADS_S": "0",
    "AJ_SWEEP_STORES_S": "0",
    "AJ_SWEEP_FILES_S": "0",
    "AJ_BEAT_MAX_INTERVAL": "1",
}
"""Settings every worker and the beat run with, on top of the soak's Redis and emulator."""


@dataclass
class Worker:
    """One ``ajobs worker`` process (its own session, so a SIGKILL takes its pool too)."""

    name: str
    proc: subprocess.Popen[bytes]
    log: Path
    started_at: float
    ready_at: float | None = None

    def ready(self) -> bool:
        """True once the worker logged "ready." (noted the first time it is seen)."""
        if self.ready_at is None and self.log.exists() and "ready." in self.log.read_text(errors="replace"):
            self.ready_at = time.time()
        return self.ready_at is not None

    def alive(self) -> bool:
        """Whether the main process still runs."""
        return self.proc.poll() is None


@dataclass
class Kill:
    """One worker SIGKILLed and the one started in its place."""

    at: float
    worker: str
    pid: int
    was_ready: bool
    replacement: str


@dataclass
class Cluster:
    """Redis, workers and a beat for one soak; ``stop`` ends every process it started."""

    logs: Path
    base_url: str
    api_key: str
    concurrency: int = 2
    rng: random.Random = field(default_factory=random.Random)
    redis: RedisServer = field(default_factory=RedisServer)
    workers: list[Worker] = field(default_factory=list)
    kills: list[Kill] = field(default_factory=list)
    exited: dict[str, str] = field(default_factory=dict)
    """Workers that exited by themselves, each with the one started in its place."""
    beat: subprocess.Popen[bytes] | None = None

    @property
    def env(self) -> dict[str, str]:
        """The environment of every process the soak starts."""
        return clean_env(
            **SOAK_ENV,
            AJ_REDIS_URL=self.redis.url,
            OPENAI_BASE_URL=self.base_url,
            OPENAI_API_KEY=self.api_key,
        )

    def start(self, workers: int) -> None:
        """Start Redis, ``workers`` workers (waiting until each is ready) and the beat."""
        self.redis.start()
        for _ in range(workers):
            self.start_worker()
        deadline = time.monotonic() + 120
        while not all(w.ready() for w in self.workers):
            dead = [w.name for w in self.workers if not w.alive()]
            if dead or time.monotonic() > deadline:
                raise RuntimeError(f"workers did not start ({dead or 'timed out'}); see {self.logs}")
            time.sleep(0.2)
        self.beat = self._spawn("beat", [AJOBS, "beat", f"--logfile={self.logs / 'beat.log'}"])

    def _spawn(self, name: str, argv: list[str]) -> subprocess.Popen[bytes]:
        with (self.logs / f"{name}.out").open("ab") as output:
            return subprocess.Popen(
                argv,
                cwd=ROOT,
                env=self.env,
                start_new_session=True,
                stdout=output,
                stderr=subprocess.STDOUT,
            )

    def start_worker(self) -> Worker:
        """Start one more worker (not waiting for it); named w1, w2, ... in start order."""
        name = f"w{len(self.workers) + 1}"
        log = self.logs / f"worker-{name}.log"
        argv = [
            AJOBS,
            "worker",
            f"--concurrency={self.concurrency}",
            f"--hostname={name}@%h",
            f"--logfile={log}",
            # As the integration tests do: no start-up handshakes between workers.
            "--without-mingle",
            "--without-gossip",
        ]
        worker = Worker(name, self._spawn(f"worker-{name}", argv), log, time.time())
        self.workers.append(worker)
        return worker

    def live_workers(self) -> list[Worker]:
        """Workers still running."""
        return [w for w in self.workers if w.alive()]

    def kill_random_worker(self) -> Kill | None:
        """SIGKILL a random running worker (a ready one when there is one) and start a replacement."""
        live = self.live_workers()
        ready = [w for w in live if w.ready()]
        if not live:
            return None
        victim = self.rng.choice(ready or live)
        was_ready = victim.ready()
        os.killpg(victim.proc.pid, signal.SIGKILL)
        victim.proc.wait(10)
        kill = Kill(time.time(), victim.name, victim.proc.pid, was_ready, self.start_worker().name)
        self.kills.append(kill)
        return kill

    def replace_exited(self) -> list[Worker]:
        """Start a worker in place of each one that exited by itself (not killed here), as a supervisor
        would; the ones that exited."""
        killed = {k.worker for k in self.kills}
        gone = [
            w for w in self.workers if not w.alive() and w.name not in killed and w.name not in self.exited
        ]
        for worker in gone:
            self.exited[worker.name] = self.start_worker().name
        return gone

    def stop(self) -> None:
        """Stop every worker and the beat (warm shutdown, SIGKILL after 20 s), then Redis (and its data)."""
        procs = [w.proc for w in self.workers] + ([self.beat] if self.beat else [])
        for proc in procs:
            if proc.poll() is None:
                proc.terminate()  # warm shutdown: the main process stops its pool itself
        deadline = time.monotonic() + 20
        for proc in procs:
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)
        self.redis.remove()

    def worker_facts(self) -> list[dict[str, Any]]:
        """Each worker's name, pid, start and ready times (unix seconds) and exit code, for the results."""
        return [
            {
                "name": w.name,
                "pid": w.proc.pid,
                "started_at": round(w.started_at, 3),
                "ready_after_s": round(w.ready_at - w.started_at, 2) if w.ready_at else None,
                "returncode": w.proc.poll(),
            }
            for w in self.workers
        ]


_LOG_LINE = re.compile(r"^\[(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}): [^\]]*\] (.*)$", re.M)


def _log_times(path: Path, text: str) -> list[float]:
    """Unix times of the lines of Celery log ``path`` that contain ``text`` (its times are local)."""
    if not path.exists():
        return []
    return [
        datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S,%f").timestamp()
        for stamp, message in _LOG_LINE.findall(path.read_text(errors="replace"))
        if text in message
    ]


def beat_sweeps(logs: Path) -> dict[str, list[float]]:
    """When beat sent the jobs sweep (from its log), and when a worker discarded one that had expired in the
    queue (its `expires` is the sweep's period) without running it (from the workers' logs)."""
    expired = [
        at
        for log in sorted(logs.glob("worker-*.log"))
        for at in _log_times(log, "Discarding revoked task: aj.cleanup.scheduled")
    ]
    return {
        "sent": _log_times(logs / "beat.log", "Sending due task cleanup-jobs"),
        "expired": sorted(expired),
    }
