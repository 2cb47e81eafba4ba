"""Workers, the poll loop and beat ride out a Redis restart: Redis with AOF is SIGKILLed and started
again on its port and data, and nobody restarts a process by hand."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import openai
import pytest
from helpers import WorkerProcess, wait_for

from devkit.redis_server import RedisServer, redis_server
from emulator.server import EmulatorHandle
from schemas.job import JobKind, JobStatus
from tasks.assistants import beta
from worker.app import create_app
from worker.client import Jobs
from worker.connections import make_store
from worker.settings import Settings
from worker.store import Store

BEAT_ENV = {
    "AJ_SWEEP_JOBS_S": "1",
    "AJ_SWEEP_THREADS_S": "0",
    "AJ_SWEEP_STORES_S": "0",
    "AJ_SWEEP_FILES_S": "0",
    "AJ_BEAT_MAX_INTERVAL": "0.5",
}
WAIT_S = 90.0
"""Longest a step may take on a loaded machine; each step ends at its event, usually within seconds."""


@pytest.fixture
def aof_redis() -> Iterator[RedisServer]:
    """A redis-server with AOF (everysec) on a fixed port and data directory, to SIGKILL and start again."""
    with redis_server(durable=True) as server:
        yield server


@pytest.fixture
def store(aof_redis: RedisServer) -> Iterator[Store]:
    job_store = make_store(Settings(redis_url=aof_redis.url))
    yield job_store
    job_store.redis.close()


@pytest.fixture
def beats(
    beat: Callable[..., tuple[subprocess.Popen[bytes], Path]], aof_redis: RedisServer
) -> list[tuple[subprocess.Popen[bytes], Path]]:
    """Two beats (the app's scheduler) on the AOF Redis."""
    return [beat(name, {**BEAT_ENV, "AJ_REDIS_URL": aof_redis.url}) for name in ("a", "b")]


def sweeps_since(store: Store, since: float) -> int:
    """Clean-up jobs (each a fired sweep) created at or after ``since``."""
    return sum(1 for r in store.jobs.list(None, 1000) if r.kind == JobKind.CLEANUP and r.created_at >= since)


def text(log: Path) -> str:
    return log.read_text(errors="replace")


def test_beats_survive_a_redis_restart_and_the_sweeps_fire_again(
    aof_redis: RedisServer,
    store: Store,
    worker: Callable[..., WorkerProcess],
    beats: list[tuple[subprocess.Popen[bytes], Path]],
) -> None:
    # Given a worker and two beats on a Redis with AOF, a jobs sweep every second, and a sweep fired
    worker(extra_env={**BEAT_ENV, "AJ_REDIS_URL": aof_redis.url})
    wait_for(lambda: sweeps_since(store, 0) > 0, WAIT_S, "the first sweep")
    [(holder, holder_log)] = [(p, log) for p, log in beats if "Acquired lock" in text(log)]
    pids = [p.pid for p, _ in beats]

    # When Redis is SIGKILLed, and started again on its port and data once the lock holder noticed
    aof_redis.kill()
    wait_for(lambda: "Redis unreachable" in text(holder_log), WAIT_S, "the lock holder to notice")
    aof_redis.start()
    restarted = time.time()

    # Then a sweep fires after the restart
    wait_for(lambda: sweeps_since(store, restarted) > 0, WAIT_S, "a sweep after the restart")
    # ...from the same beat processes, both still running (the standby too)
    assert [p.pid for p, _ in beats] == pids
    assert [p.poll() for p, _ in beats] == [None, None], [text(log)[-2000:] for _, log in beats]
    # ...and the holder logged the outage once and its end
    assert text(holder_log).count("Redis unreachable") == 1
    assert "Redis is back" in text(holder_log)
    assert holder.poll() is None


@pytest.mark.slow
@pytest.mark.soak
def test_runs_by_the_hundred_and_the_sweeps_ride_out_a_redis_kill_and_restart(
    aof_redis: RedisServer,
    store: Store,
    worker: Callable[..., WorkerProcess],
    beats: list[tuple[subprocess.Popen[bytes], Path]],
    emulator: EmulatorHandle,
    volume: Callable[[int, int], int],
) -> None:
    # Given two workers and two beats on a Redis with AOF, and 100 run jobs of 1-3 s under way (200 in make
    # soak)
    count = volume(100, 200)
    emulator.update_profile(run_duration={"kind": "uniform", "min": 1.0, "max": 3.0})
    on_aof = {**BEAT_ENV, "AJ_REDIS_URL": aof_redis.url, "AJ_OWNERLESS_AFTER": "5", "AJ_STALL_AFTER": "10",
              "AJ_WATCHDOG_EVERY": "2"}  # fmt: skip
    workers = [worker(name=name, extra_env=on_aof) for name in ("w1", "w2")]
    api = openai.OpenAI(base_url=emulator.base_url, api_key="sk-test", max_retries=0)
    assistant = beta(api).assistants.create(model="gpt-4o")
    settings = Settings(redis_url=aof_redis.url, broker_url=aof_redis.url)
    jobs = Jobs(settings, store, celery=create_app(settings))
    question = [{"role": "user", "content": "Which river runs through Paris?"}]
    refs = jobs.submit_many(
        [{"kind": "run", "backend": "assistants", "assistant_id": assistant.id, "messages": question}] * count
    )
    ended = lambda: sum(1 for r in store.jobs.get_many([r.id for r in refs]) if r and r.status.ended)  # noqa: E731
    wait_for(lambda: ended() >= count // 7, WAIT_S, "the first jobs to end")
    pids = [w.proc.pid for w in workers] + [p.pid for p, _ in beats]

    # When Redis is SIGKILLed mid-flight and started again on its port and data
    aof_redis.kill()
    time.sleep(1.0)  # down for a moment, as a crashed and restarted server is
    aof_redis.start()
    restarted = time.time()

    # Then every job ends, completed, each with exactly one remote run
    wait_for(lambda: ended() == count, 240, "every job to end")
    records = store.jobs.get_many([r.id for r in refs])
    assert {r.status for r in records if r} == {JobStatus.COMPLETED}
    assert sorted(emulator.counters()["runs_per_job"].values()) == [1] * count
    # ...a sweep fires after the restart, and nobody restarted a process by hand
    wait_for(lambda: sweeps_since(store, restarted) > 0, WAIT_S, "a sweep after the restart")
    assert [w.proc.pid for w in workers] + [p.pid for p, _ in beats] == pids
    assert all(w.proc.poll() is None for w in workers) and all(p.poll() is None for p, _ in beats)
