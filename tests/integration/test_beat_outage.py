"""Beat rides out a Redis restart: Redis with AOF is SIGKILLed and started again on its port and data."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from helpers import ROOT, WorkerProcess

from devkit.redis_server import answers, free_port, redis_server_binary
from schemas.job import JobKind
from worker.connections import make_store
from worker.settings import Settings
from worker.store import JobStore

BEAT_ENV = {
    "AJ_SWEEP_JOBS_S": "1",
    "AJ_SWEEP_THREADS_S": "0",
    "AJ_SWEEP_STORES_S": "0",
    "AJ_SWEEP_FILES_S": "0",
    "AJ_BEAT_MAX_INTERVAL": "0.5",
}
WAIT_S = 90.0
"""Longest a step may take on a loaded machine; each step ends at its event, usually within seconds."""


class AofRedis:
    """A redis-server with AOF on a fixed port and data directory, to SIGKILL and start again."""

    def __init__(self, port: int, data: Path):
        self.port = port
        self.data = data
        self.url = f"redis://127.0.0.1:{port}/0"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Start it (loading what the last one wrote) and wait until it answers."""
        self.data.mkdir(exist_ok=True)
        self.proc = subprocess.Popen(
            [redis_server_binary(), "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.data),
             "--appendonly", "yes", "--appendfsync", "always", "--save", "",
             "--maxmemory-policy", "noeviction", "--loglevel", "warning"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        wait_for(lambda: answers(self.url), "redis-server to answer")

    def kill(self) -> None:
        """SIGKILL it, as a crash would."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


def wait_for(condition: Callable[[], bool], what: str, timeout: float = WAIT_S) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


@pytest.fixture
def aof_redis(tmp_path: Path) -> Iterator[AofRedis]:
    server = AofRedis(free_port(), tmp_path / "redis-data")
    server.start()
    yield server
    server.kill()


@pytest.fixture
def store(aof_redis: AofRedis) -> Iterator[JobStore]:
    job_store = make_store(Settings(redis_url=aof_redis.url))
    yield job_store
    job_store.redis.close()


@pytest.fixture
def beats(
    env: dict[str, str], aof_redis: AofRedis, tmp_path: Path
) -> Iterator[list[tuple[subprocess.Popen[bytes], Path]]]:
    """Two ``celery beat`` processes (the app's scheduler) on the AOF Redis; stopped at teardown."""
    started = []
    for name in ("a", "b"):
        log = tmp_path / f"beat-{name}.log"
        cmd = [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "worker.app",
            "beat",
            "--loglevel=INFO",
            f"--logfile={log}",
        ]
        with (tmp_path / f"beat-{name}.out").open("wb") as output:
            proc = subprocess.Popen(
                cmd,
                cwd=ROOT,
                env={**env, **BEAT_ENV, "AJ_REDIS_URL": aof_redis.url},
                start_new_session=True,
                stdout=output,
                stderr=subprocess.STDOUT,
            )
        started.append((proc, log))
    yield started
    for proc, _ in started:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()


def sweeps_since(store: JobStore, since: float) -> int:
    """Clean-up jobs (each a fired sweep) created at or after ``since``."""
    return sum(1 for r in store.list(None, 1000) if r.kind == JobKind.CLEANUP and r.created_at >= since)


def text(log: Path) -> str:
    return log.read_text(errors="replace")


def test_beats_survive_a_redis_restart_and_the_sweeps_fire_again(
    aof_redis: AofRedis,
    store: JobStore,
    worker: Callable[..., WorkerProcess],
    beats: list[tuple[subprocess.Popen[bytes], Path]],
) -> None:
    # Given a worker and two beats on a Redis with AOF, a jobs sweep every second, and a sweep fired
    worker(extra_env={**BEAT_ENV, "AJ_REDIS_URL": aof_redis.url})
    wait_for(lambda: sweeps_since(store, 0) > 0, "the first sweep")
    [(holder, holder_log)] = [(p, log) for p, log in beats if "Acquired lock" in text(log)]
    pids = [p.pid for p, _ in beats]

    # When Redis is SIGKILLed, and started again on its port and data once the lock holder noticed
    aof_redis.kill()
    wait_for(lambda: "Redis unreachable" in text(holder_log), "the lock holder to notice")
    aof_redis.start()
    restarted = time.time()

    # Then a sweep fires after the restart
    wait_for(lambda: sweeps_since(store, restarted) > 0, "a sweep after the restart")
    # ...from the same beat processes, both still running (the standby too)
    assert [p.pid for p, _ in beats] == pids
    assert [p.poll() for p, _ in beats] == [None, None], [text(log)[-2000:] for _, log in beats]
    # ...and the holder logged the outage once and its end
    assert text(holder_log).count("Redis unreachable") == 1
    assert "Redis is back" in text(holder_log)
    assert holder.poll() is None
