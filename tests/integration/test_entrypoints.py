"""The commands an operator runs: ``ajobs worker``, ``ajobs beat``, ``ajobs flower``.

Each is started the way an operator would, from a directory of their own that holds an application's
``tasks.py`` and ``worker.py``: ``celery -A worker.app worker`` fails there ("'tasks' is not a
package"), because Celery imports the app with the working directory first on ``sys.path``.
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from helpers import WorkerProcess, http_status, kill_all

from devkit.redis_server import free_port
from schemas.job import JobKind, JobStatus
from worker.client import Jobs

AJOBS = str(Path(sys.executable).parent / "ajobs")
"""The installed console script, which (unlike ``python -m``) puts no working directory on sys.path."""

Start = Callable[..., tuple[subprocess.Popen[bytes], Path]]


@pytest.fixture
def app_dir(tmp_path: Path) -> Path:
    """An operator's directory holding an application's own ``tasks.py`` and ``worker.py``."""
    directory = tmp_path / "app"
    directory.mkdir()
    (directory / "tasks.py").write_text(
        '"""The application\'s own tasks."""\n\n\ndef send_email() -> None:\n    pass\n'
    )
    (directory / "worker.py").write_text('"""The application\'s own worker module."""\n')
    return directory


@pytest.fixture
def ajobs(env: dict[str, str], app_dir: Path, tmp_path: Path) -> Iterator[Start]:
    """Factory: ``ajobs(role, *args)`` starts ``ajobs ROLE ARGS`` in ``app_dir``; all stop at teardown."""
    started: list[subprocess.Popen[bytes]] = []

    def start(
        role: str, *args: str, extra_env: dict[str, str] | None = None
    ) -> tuple[subprocess.Popen[bytes], Path]:
        output = tmp_path / f"{role}-{len(started)}.out"
        with output.open("wb") as out:
            proc = subprocess.Popen([AJOBS, role, *args], cwd=app_dir, env={**env, **(extra_env or {})},
                                    start_new_session=True, stdout=out, stderr=subprocess.STDOUT)  # fmt: skip
        started.append(proc)
        return proc, output

    yield start
    kill_all(started)


def wait_for(check: Callable[[], bool], what: str, proc: subprocess.Popen[bytes], output: Path) -> None:
    """Poll ``check`` until it holds; fail with the process's output if it exits or 60 s pass."""
    deadline = time.monotonic() + 60
    while not check():
        if proc.poll() is not None or time.monotonic() > deadline:
            pytest.fail(f"{what} did not happen:\n{output.read_text(errors='replace')[-3000:]}")
        time.sleep(0.1)


def test_ajobs_worker_beside_an_application_s_tasks_py_runs_a_job_to_the_end(
    jobs: Jobs, ajobs: Start, tmp_path: Path
) -> None:
    # Given `ajobs worker` started in a directory holding its own tasks.py and worker.py, with Celery
    # options passed through (its log file, its name, its pool size)
    log = tmp_path / "worker.log"
    proc, output = ajobs("worker", f"--logfile={log}", "--hostname=ops@%h", "--concurrency=2",
                         "--without-mingle", "--without-gossip")  # fmt: skip
    wait_for(
        lambda: log.exists() and "ops@" in log.read_text() and "ready." in log.read_text(),
        "ready",
        proc,
        output,
    )

    # When a run that calls a worker function (from AJ_TOOL_MODULES) is submitted
    ref = jobs.submit(
        {
            "kind": "run",
            "backend": "responses",
            "model": "gpt-4o",
            "tools": [{"type": "function", "name": "get_weather"}],
            "messages": [{"role": "user", "content": "what does get_weather say?"}],
        }
    )

    # Then the worker and its poll loop drive it to the end, answering the call itself
    record = jobs.wait(ref.id, timeout=60)
    assert record.status == JobStatus.COMPLETED, (record.error, output.read_text(errors="replace")[-3000:])
    assert record.result is not None and "sunny, 21 C" in record.result["text"]
    # And the worker's own lines are in its log as Celery's are (not the CLI's one-line warnings)
    assert re.search(r"INFO/MainProcess\] poll loop started in process \d+", log.read_text()), log.read_text()


@pytest.mark.slow
def test_ajobs_beat_fires_the_sweeps_a_worker_runs(
    jobs: Jobs, worker: Callable[..., WorkerProcess], ajobs: Start, tmp_path: Path
) -> None:
    # Given a worker, and `ajobs beat` started in the application's directory with a 1 s jobs sweep
    worker()
    log = tmp_path / "beat.log"
    sweeps = {
        "AJ_SWEEP_JOBS_S": "1",
        "AJ_SWEEP_THREADS_S": "0",
        "AJ_SWEEP_STORES_S": "0",
        "AJ_SWEEP_FILES_S": "0",
    }
    proc, output = ajobs("beat", f"--logfile={log}", extra_env={**sweeps, "AJ_BEAT_MAX_INTERVAL": "0.5"})

    # When it has run long enough to fire
    def swept() -> bool:
        return any(
            r.kind == JobKind.CLEANUP and r.request["targets"] == ["jobs"] for r in jobs.list(limit=100)
        )

    # Then a clean-up job of the jobs sweep appears, submitted by the beat it scheduled
    wait_for(swept, "a scheduled jobs sweep", proc, output)
    assert "Acquired lock" in log.read_text(errors="replace")


def test_ajobs_flower_refuses_to_start_without_credentials_in_one_line(
    env: dict[str, str], app_dir: Path
) -> None:
    # Given no Flower credentials and no development flag
    bare = {k: v for k, v in env.items() if not k.startswith("AJ_FLOWER")}

    # When an operator runs `ajobs flower`
    done = subprocess.run(
        [AJOBS, "flower"], cwd=app_dir, env=bare, capture_output=True, text=True, timeout=60
    )

    # Then it exits 2 with one line naming the settings to set, and serves nothing
    assert done.returncode == 2
    assert done.stdout == ""
    (line,) = done.stderr.splitlines()
    assert line.startswith("error:") and "AJ_FLOWER_USER" in line and "AJ_FLOWER_DEV" in line


def test_ajobs_flower_serves_behind_basic_auth_from_an_application_s_directory(ajobs: Start) -> None:
    # Given credentials and a free port
    port = free_port()
    creds = {"AJ_FLOWER_USER": "ops", "AJ_FLOWER_PASSWORD": "flower-pass", "AJ_FLOWER_PORT": str(port)}

    # When `ajobs flower` starts in the application's directory
    proc, output = ajobs("flower", extra_env=creds)
    base = f"http://127.0.0.1:{port}"

    # Then it shows the workers page with the credentials and refuses it without them
    wait_for(
        lambda: http_status(base + "/healthcheck", "ops:flower-pass") == 200, "Flower answering", proc, output
    )
    assert http_status(base + "/workers", "ops:flower-pass") == 200
    assert http_status(base + "/workers", None) == 401
