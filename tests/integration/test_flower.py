"""Flower as the operator's window: behind basic auth, showing our workers and task names in a real browser.

Skipped where no Chromium is installed (``make test`` installs it where it can).
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from base64 import b64encode
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import openai
import pytest
from helpers import ROOT, WorkerProcess, kill_all, wait_for

from emulator.server import EmulatorHandle
from schemas.job import JobStatus
from tasks.assistants import beta
from worker.client import Jobs

_CANDIDATES = (shutil.which("chromium"), shutil.which("chromium-browser"), "/usr/bin/chromium")
CHROMIUM = next((p for p in _CANDIDATES if p and Path(p).exists()), None)
USER, PASSWORD = "ops", "flower-test-pass"
API_KEY = "sk-test"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _get(url: str, auth: bool) -> tuple[int, str]:
    request = urllib.request.Request(url)
    if auth:
        request.add_header("Authorization", "Basic " + b64encode(f"{USER}:{PASSWORD}".encode()).decode())
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, response.read().decode(errors="replace")
    except urllib.error.HTTPError as exc:
        exc.close()
        return exc.code, ""


@pytest.fixture
def flower(env: dict[str, str], tmp_path: Path) -> Iterator[str]:
    """Flower started by our launcher (``python -m worker.flower``) with credentials; its base URL."""
    port = _free_port()
    flower_env = {**env, "AJ_FLOWER_USER": USER, "AJ_FLOWER_PASSWORD": PASSWORD, "AJ_FLOWER_PORT": str(port)}
    with (tmp_path / "flower.out").open("wb") as output:
        proc = subprocess.Popen([sys.executable, "-m", "worker.flower"], cwd=ROOT, env=flower_env,
                                start_new_session=True, stdout=output, stderr=subprocess.STDOUT)  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                if _get(url + "/healthcheck", auth=True)[0] == 200:
                    break
            except OSError:
                pass
            assert proc.poll() is None, (tmp_path / "flower.out").read_text(errors="replace")
            time.sleep(0.2)
        else:
            pytest.fail("Flower did not start:\n" + (tmp_path / "flower.out").read_text(errors="replace"))
        yield url
    finally:
        kill_all([proc])


def test_flower_refuses_to_start_without_credentials(env: dict[str, str]) -> None:
    # Given no credentials and no development flag, When the launcher starts,
    # Then it stops, naming the settings
    bare = {k: v for k, v in env.items() if not k.startswith("AJ_FLOWER")}
    done = subprocess.run([sys.executable, "-m", "worker.flower"], cwd=ROOT, env=bare, capture_output=True,
                          text=True, timeout=30)  # fmt: skip
    assert done.returncode != 0
    assert "AJ_FLOWER_USER" in done.stderr and "AJ_FLOWER_DEV" in done.stderr


def _chromium(tmp: Path, *args: str) -> str:
    assert CHROMIUM is not None
    profile = tempfile.mkdtemp(dir=tmp, prefix="chromium-")
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           "--disable-dev-shm-usage", f"--user-data-dir={profile}", "--virtual-time-budget=5000",
           *args]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    return done.stdout


@pytest.mark.skipif(CHROMIUM is None, reason="no Chromium here (apt-get install chromium)")
def test_flower_shows_the_workers_and_our_jobs_in_a_browser_and_never_the_key(
    jobs: Jobs,
    worker: Callable[..., WorkerProcess],
    flower: str,
    emulator: EmulatorHandle,
    tmp_path: Path,
) -> None:
    # Given a worker, Flower, and a few jobs run while Flower watches, one of them failing
    worker(name="flowerw")
    with openai.OpenAI(base_url=emulator.base_url, api_key=API_KEY, max_retries=0) as api:
        assistant = beta(api).assistants.create(model="gpt-4o")
    run = {"kind": "run", "backend": "assistants", "messages": [{"role": "user", "content": "hi"}]}
    refs = jobs.submit_many(
        [{**run, "assistant_id": assistant.id}] * 3 + [{"kind": "cleanup", "dry_run": True}]
    )
    failing = jobs.submit({**run, "assistant_id": "asst_missing"})
    assert all(jobs.wait(ref.id, timeout=30).status == JobStatus.COMPLETED for ref in refs)
    assert jobs.wait(failing.id, timeout=30).status == JobStatus.FAILED

    # Then without credentials Flower answers 401
    assert _get(flower + "/workers", auth=False)[0] == 401
    # ...its task list (over HTTP) shows each task's jobs and kind as its arguments, and where its jobs
    # ended as its result, the failed job's code included
    ends = [f"{failing.id} -> failed (", f"{refs[0].id} -> completed", f"{refs[3].id} -> completed"]
    tasks = wait_for(lambda: _tasks_showing(flower, ends), 30, "Flower to see the jobs' ends")
    shown = {(t["name"], t["args"], t.get("result")) for t in tasks.values()}
    start = next(t for t in tasks.values() if t["name"] == "aj.run.start" and failing.id in str(t["args"]))
    assert start["args"] == f"{failing.id} (run)"
    assert f"{failing.id} -> failed (" in str(start["result"]), start
    assert any(name == "aj.cleanup.start" and refs[3].id in str(args) for name, args, _ in shown), shown
    assert any(f"{refs[0].id} -> completed" in str(result) for _, _, result in shown), shown
    # ...and in headless Chromium, with credentials, the workers page names our worker
    authed = flower.replace("http://", f"http://{USER}:{PASSWORD}@")
    workers_page = _chromium(tmp_path, "--dump-dom", authed + "/workers")
    assert "flowerw@" in workers_page, workers_page[-3000:]
    # ...and the tasks page our task names by kind, and the jobs
    tasks_page = _chromium(tmp_path, "--dump-dom", authed + "/tasks")
    for name in ("aj.run.start", "aj.run.finish", "aj.cleanup.start", failing.id):
        assert name in tasks_page, tasks_page[-3000:]
    shot = tmp_path / "flower-tasks.png"
    _chromium(tmp_path, "--window-size=1400,1000", f"--screenshot={shot}", authed + "/tasks")
    assert shot.exists() and shot.stat().st_size > 10_000
    # ...and no page shows the API key
    worker_detail = _get(flower + "/worker/" + next(iter(_worker_names(workers_page))), auth=True)[1]
    for page in (workers_page, tasks_page, worker_detail, json.dumps(tasks)):
        assert API_KEY not in page


def _tasks_showing(flower: str, ends: list[str]) -> dict[str, Any] | None:
    """Flower's tasks (its HTTP API) once their results show each of ``ends``, else None."""
    status, body = _get(flower + "/api/tasks", auth=True)
    if status != 200:
        return None
    tasks: dict[str, Any] = json.loads(body)
    results = " ".join(str(t.get("result")) for t in tasks.values())
    return tasks if all(end in results for end in ends) else None


def _worker_names(page: str) -> list[str]:
    import re

    return sorted(set(re.findall(r"flowerw@[\w.-]+", page)))
