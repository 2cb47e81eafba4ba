"""Shared test helpers: the fast emulator profile, a handle on a worker process, waiting on real workers,
and what run tests read from the emulator."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import inspect
import os
import signal
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import openai
import pytest
import redis
from celery.exceptions import SoftTimeLimitExceeded
from pydantic import ValidationError

from emulator.profile import Distribution, Profile
from emulator.server import EmulatorHandle
from schemas.job import JobRecord, JobStatus
from tasks.assistants import beta
from worker.client import Jobs
from worker.store.keys import METRICS_API

ROOT = Path(__file__).resolve().parent.parent
"""The repository's root (the workers' working directory)."""

Ask = Callable[..., dict[str, Any]]
"""``ask("question", **fields)``: a run request for the backend under test (the `ask` fixture)."""
NewThread = Callable[[], dict[str, str]]
"""``new_thread()``: a fresh thread or conversation, as the request field naming it."""

OPENAPI = ROOT / "vendor" / "openai-openapi" / "openapi.json"
"""The OpenAI API contract, vendored with its source and licence (refreshed by scripts/refresh_openapi.py)."""

FAST_PROFILE = Profile(
    seed=7,
    run_duration=Distribution(kind="uniform", min=0.3, max=0.8),
    response_duration=Distribution(kind="uniform", min=0.3, max=0.8),
    poll_after_ms=100,
)


class WorkerProcess:
    """A real ``celery -A worker.app worker`` in its own process."""

    def __init__(self, proc: subprocess.Popen[bytes], log: Path):
        self.proc = proc
        self.log = log

    def wait_ready(self, timeout: float = 120) -> None:
        """Block until the worker says it is ready."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if "ready." in self.log.read_text(errors="replace"):
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.1)
        output = self.log.with_suffix(".out")
        text = self.log.read_text(errors="replace") + (
            output.read_text(errors="replace") if output.exists() else ""
        )
        raise RuntimeError(f"worker did not start:\n{text[-3000:]}")

    def kill(self) -> None:
        """SIGKILL the worker and its pool processes at once, as a crashed host would."""
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)


def kill_all(procs: Iterable[subprocess.Popen[bytes]]) -> None:
    """SIGKILL each process, with its group when it leads one (a worker's pool), and reap them: a test's
    processes are done with at its end, and a warm shutdown only costs time (seconds each, more once
    their Redis is gone)."""
    procs = [p for p in procs if p.poll() is None]
    for proc in procs:
        with contextlib.suppress(ProcessLookupError):
            if os.getpgid(proc.pid) == proc.pid:
                os.killpg(proc.pid, signal.SIGKILL)
            else:
                proc.kill()
    for proc in procs:
        proc.wait(10)


def write_files(folder: Path, count: int, prefix: str = "doc") -> list[str]:
    """``count`` small text files of different sizes in ``folder``; their paths."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        path = folder / f"{prefix}-{i:03d}.txt"
        path.write_text(f"document {i}: " + "lorem ipsum " * (i + 1))
        paths.append(str(path))
    return paths


# --- waiting on real workers (tests/integration only: the harness never waits) -------------------
def wait_for(predicate: Callable[[], Any], timeout: float, what: str) -> Any:
    """Poll ``predicate`` until it returns something truthy (returned); fail naming ``what`` after
    ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not (value := predicate()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)
    return value


def wait_status(jobs: Jobs, job_id: str, status: JobStatus, timeout: float = 20) -> JobRecord:
    """Block until the job is in ``status``; its record."""
    wait_for(lambda: jobs.get(job_id).status == status, timeout, f"job {job_id} to be {status}")
    return jobs.get(job_id)


# --- what run tests read from the emulator --------------------------------------------------------
def has_remote_run(record: JobRecord) -> bool:
    """True once the job's remote run (or response) exists and is recorded."""
    return bool(record.remote.get("run_id") or record.remote.get("response_id"))


def created_per_job(emulator: EmulatorHandle, backend: str) -> dict[str, int]:
    """Runs (assistants) or responses created per job id, from their ``aj_job_id`` metadata."""
    counters = emulator.counters()
    return dict(counters["runs_per_job" if backend == "assistants" else "responses_per_job"])


def set_durations(emulator: EmulatorHandle, low: float, high: float | None = None) -> None:
    """Make the emulator's runs and responses last ``low`` seconds (or between ``low`` and ``high``)."""
    spread = {"kind": "fixed", "value": low} if high is None else {"kind": "uniform", "min": low, "max": high}
    emulator.update_profile(run_duration=spread, response_duration=spread)


def remote_status(api: openai.OpenAI, record: JobRecord) -> str:
    """The status the API reports for the job's remote run or response."""
    remote = record.remote
    if "run_id" in remote:
        return str(beta(api).threads.runs.retrieve(remote["run_id"], thread_id=remote["thread_id"]).status)
    return str(api.responses.retrieve(remote["response_id"]).status)


def written_keys(client: redis.Redis) -> set[bytes | str]:
    """Every key in the test's Redis but the API request counters: this test process writes those on its
    own schedule (from a daemon thread), and a request an earlier test sent may be counted after the wipe."""
    return {key for key in client.keys("*") if key != METRICS_API.encode()}


def exists(fetch: Callable[[], object]) -> bool:
    """Whether ``fetch()`` finds its object (False on a 404)."""
    try:
        fetch()
    except openai.NotFoundError:
        return False
    return True


def errors_of(build: Callable[[], object]) -> list[dict[str, Any]]:
    """The errors `build` raises, as pydantic reports them (without documentation urls)."""
    with pytest.raises(ValidationError) as caught:
        build()
    return [dict(error) for error in caught.value.errors(include_url=False)]


def only_error(build: Callable[[], object]) -> dict[str, Any]:
    """The single error `build` raises."""
    errors = errors_of(build)
    assert len(errors) == 1, errors
    return errors[0]


def question(content: str = "What is the capital of France?", **fields: object) -> dict[str, object]:
    """A run request on the responses backend (the default model), with ``fields`` added."""
    message = {"role": "user", "content": content}
    return {"kind": "run", "backend": "responses", "model": "gpt-4o", "messages": [message], **fields}


# --- talking HTTP to the processes under test -------------------------------------------------------
def http_status(url: str, auth: str | None = None) -> int | None:
    """The HTTP status of a GET on ``url`` (basic ``auth`` as user:password); None while nothing listens."""
    request = urllib.request.Request(url)
    if auth:
        request.add_header("Authorization", "Basic " + base64.b64encode(auth.encode()).decode())
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        exc.close()
        return exc.code
    except OSError:
        return None


def webhook_headers(
    body: bytes, secret: str, *, delivery_id: str | None = None, at: float | None = None
) -> dict[str, str]:
    """Standard Webhooks headers for ``body`` signed with ``secret`` (``whsec_`` and base64), as OpenAI
    signs its deliveries."""
    delivery_id = delivery_id or f"wh_{uuid.uuid4().hex}"
    timestamp = str(int(at if at is not None else time.time()))
    key = base64.b64decode(secret.removeprefix("whsec_"))
    mac = hmac.new(key, f"{delivery_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return {
        "webhook-id": delivery_id,
        "webhook-timestamp": timestamp,
        "webhook-signature": f"v1,{base64.b64encode(mac).decode()}",
        "content-type": "application/json",
    }


@contextlib.contextmanager
def soft_limit_after(
    monkeypatch: pytest.MonkeyPatch, owner: type, method: str, *, nth: int = 1, first: str | None = None
) -> Iterator[list[Any]]:
    """Within the block, the task's soft time limit strikes (SIGUSR1, the signal billiard sends, raising
    `SoftTimeLimitExceeded` in the task's thread) once the ``nth`` call of ``owner.method`` (whose first
    argument is ``first``, when given) has its answer from the server and before the task has read it;
    yields the answers it struck after."""
    original = getattr(owner, method)
    struck: list[Any] = []
    calls = 0

    def strike(args: tuple[Any, ...], answer: Any) -> Any:
        nonlocal calls
        if first is None or args[0] == first:
            calls += 1
        if calls == nth and not struck:
            struck.append(answer)
            os.kill(os.getpid(), signal.SIGUSR1)
        return answer

    if inspect.iscoroutinefunction(original):

        async def patched(self: Any, *args: Any, **kwargs: Any) -> Any:
            return strike(args, await original(self, *args, **kwargs))

    else:

        def patched(self: Any, *args: Any, **kwargs: Any) -> Any:
            return strike(args, original(self, *args, **kwargs))

    def soft_time_limit(*_: object) -> None:
        raise SoftTimeLimitExceeded()

    monkeypatch.setattr(owner, method, patched)
    previous = signal.signal(signal.SIGUSR1, soft_time_limit)
    try:
        yield struck
    finally:
        signal.signal(signal.SIGUSR1, previous)
