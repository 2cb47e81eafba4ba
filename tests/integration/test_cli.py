"""``ajobs`` as a person meets it, run as a subprocess: help everywhere, whole ids in 80 columns, what a
cancel did, and every failure as one line naming the setting or the fix, with its own exit code and no
traceback (0 success, 1 the job ended badly, 2 usage or validation, 3 infrastructure unreachable, 4 timed
out waiting, 130 interrupted)."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import click
import psutil
import pytest
import redis
from helpers import wait_for, write_files, written_keys

from devkit.redis_server import free_port
from emulator.server import EmulatorHandle
from schemas.job import JobError, JobStatus
from worker.cli import cli
from worker.client import Jobs

AJOBS = str(Path(sys.executable).parent / "ajobs")


def ajobs(env: dict[str, str], *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """``ajobs ARGS`` with ``env``, its output captured."""
    return subprocess.run(
        [AJOBS, *args], env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


def one_error_line(done: subprocess.CompletedProcess[str]) -> str:
    """The single ``error:`` line a failed command printed (and nothing that looks like a traceback)."""
    assert "Traceback" not in done.stderr, done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, done.stderr
    return errors[0]


@pytest.fixture
def silent_redis() -> Iterator[str]:
    """A Redis URL whose server never answers: its listen queue is full, so a connect times out."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(0)
    port = server.getsockname()[1]
    held = []
    try:
        while True:  # fill the accept queue; the connect that times out says it is full
            try:
                held.append(socket.create_connection(("127.0.0.1", port), timeout=0.5))
            except OSError:
                break
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        for conn in held:
            conn.close()
        server.close()


# --- reading well -------------------------------------------------------------------------------
def test_every_command_and_option_has_help_and_h_and_version_work(env: dict[str, str]) -> None:
    # Given every command of ajobs (the roles pass their options to Celery or Flower)
    def walk(command: click.Command, path: str) -> Iterator[tuple[str, click.Command]]:
        yield path, command
        if isinstance(command, click.Group):
            for name, sub in command.commands.items():
                yield from walk(sub, f"{path} {name}")

    missing = [
        f"{path} {param.name}"
        for path, command in walk(cli, "ajobs")
        for param in command.params
        if isinstance(param, click.Option) and not param.help
    ]
    undocumented = [path for path, command in walk(cli, "ajobs") if not command.help]
    # Then each has a help text
    assert missing == [] and undocumented == []
    # ...and -h and --version answer
    short = ajobs(env, "submit", "index", "-h")
    assert short.returncode == 0 and "--upload" in short.stdout and "--remote-paths" in short.stdout
    version = ajobs(env, "--version")
    assert version.returncode == 0 and version.stdout.strip() == "ajobs 0.1.0"


def test_ajobs_list_in_80_columns_shows_every_id_whole(env: dict[str, str], jobs: Jobs) -> None:
    # Given three jobs, one failed with a long error code
    refs = jobs.submit_many([{"kind": "cleanup", "dry_run": True}] * 3)
    jobs.store.jobs.set_status(refs[0].id, JobStatus.FAILED, error=JobError(code="x" * 70, message="m"))

    # When they are listed in an 80-column terminal
    shown = ajobs({**env, "COLUMNS": "80"}, "list")

    # Then each id is there whole, with its kind and status, and no line is wider than the terminal
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    assert lines[0].split() == ["ID", "KIND", "STATUS", "UPDATED", "ERROR", "/", "RESULT"]
    for ref in refs:
        assert any(line.startswith(f"{ref.id}  cleanup") for line in lines), shown.stdout
    assert all(len(line) <= 80 for line in lines), shown.stdout
    # ...and --json lists the records whole
    listed = json.loads(ajobs(env, "list", "--json").stdout)
    assert {r["id"] for r in listed} == {r.id for r in refs}


def test_status_shows_the_job_and_cancel_says_what_it_did(env: dict[str, str], jobs: Jobs) -> None:
    # Given a queued run
    ref = jobs.submit({"kind": "run", "model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]})

    # When it is shown, then cancelled twice
    status = ajobs(env, "status", ref.id)
    first = ajobs(env, "cancel", ref.id)
    second = ajobs(env, "cancel", ref.id)

    # Then status shows its kind, backend, attempts and when it was submitted
    rows = dict(line.split(None, 1) for line in status.stdout.splitlines() if " " in line)
    assert rows["status"].strip() == "queued" and rows["backend"].strip() == "responses"
    assert rows["attempts"].strip() == "0"
    assert re.search(r"\((just now|\d+ s ago)\)$", rows["submitted"].strip()), rows["submitted"]
    # ...and each cancel says what it did
    assert (
        first.returncode == 0 and "cancelled: it was still queued, so it never reached OpenAI" in first.stdout
    )
    assert second.returncode == 0 and "had already ended (cancelled): nothing to cancel" in second.stdout


def test_a_bad_request_names_each_field_once(env: dict[str, str], redis_client: redis.Redis) -> None:
    # When a run is submitted with an empty assistant id and seventeen metadata pairs
    pairs = [a for i in range(17) for a in ("--metadata", f"k{i}=v")]
    done = ajobs(env, "submit", "run", "--backend", "assistants", "--assistant", "", "-m", "hi", *pairs)

    # Then it exits 2 naming each field once, and writes nothing
    assert done.returncode == 2
    assert "  assistant_id: must not be empty" in done.stderr
    assert "assistant_id: assistant_id" not in done.stderr and "metadata: metadata" not in done.stderr
    assert written_keys(redis_client) == set()


# --- infrastructure failures ------------------------------------------------------------------------
def test_each_redis_failure_is_one_line_naming_the_setting_with_its_exit_code(
    env: dict[str, str], redis_url: str, silent_redis: str
) -> None:
    port = redis_url.rsplit(":", 1)[1].split("/")[0]
    cases = {
        "refused": (f"redis://127.0.0.1:{free_port()}/0", 3, "refused the connection: nothing listens there"),
        "silent": (silent_redis, 3, "does not answer (timed out)"),
        "unknown host": ("redis://no-such-host.invalid:6379/0", 3, "its host name does not resolve"),
        "wrong password": (f"redis://ops:wrong-SECRET@127.0.0.1:{port}/0", 3, "refused the credentials"),
        "password breaking the url": ("redis://:p@ss/w-SECRET@127.0.0.1:6379/0", 2, "percent-encode"),
    }
    for case, (url, code, says) in cases.items():
        # When a read runs against that Redis
        done = ajobs({**env, "AJ_REDIS_URL": url}, "status", "job_x")
        # Then it exits with the code, in one line that names AJ_REDIS_URL and never the password
        line = one_error_line(done)
        assert done.returncode == code, (case, done.stderr)
        assert says in line and "AJ_REDIS_URL" in line, (case, line)
        assert "SECRET" not in done.stderr and done.stdout == ""


def test_a_broker_that_cannot_be_reached_accepts_the_job_and_says_so_in_one_line(
    env: dict[str, str], jobs: Jobs
) -> None:
    # Given a broker nobody listens on
    down = {**env, "AJ_BROKER_URL": f"redis://127.0.0.1:{free_port()}/0"}

    # When a job is submitted
    done = ajobs(down, "submit", "cleanup", "--dry-run")

    # Then it is accepted (exit 0, its id printed), with one warning naming the broker's setting
    assert done.returncode == 0, done.stderr
    job_id = done.stdout.strip()
    assert jobs.get(job_id).status == JobStatus.QUEUED
    (warning,) = done.stderr.splitlines()
    assert warning.startswith("warning: the broker (AJ_BROKER_URL") and "AJ_OUTBOX_GRACE" in warning

    # And waiting on it past a timeout says the workers could not be asked, exit 4
    waited = ajobs(down, "wait", job_id, "--timeout", "0.5")
    line = one_error_line(waited)
    assert waited.returncode == 4
    assert f"job {job_id} is still queued after 0.5 s; could not ask the workers: the broker at" in line


def test_a_wait_that_times_out_says_no_worker_consumes_the_queue(env: dict[str, str]) -> None:
    # Given no worker at all
    # When a run is submitted and waited on for a second
    done = ajobs(env, "submit", "run", "--model", "gpt-4o", "-m", "hi", "--wait", "--timeout", "1")

    # Then it exits 4 saying the job goes on queued because nobody consumes its queues
    line = one_error_line(done)
    assert done.returncode == 4
    assert "is still queued after 1 s; no worker consumes its queues runs,runs.active" in line
    assert "(start one: ajobs worker -Q runs,runs.active)" in line


def test_a_worker_without_an_api_key_refuses_to_start_naming_the_variable(
    env: dict[str, str], tmp_path: Path
) -> None:
    # Given no OPENAI_API_KEY
    bare = {k: v for k, v in env.items() if k != "OPENAI_API_KEY"}

    # When a worker starts
    done = subprocess.run(
        [AJOBS, "worker", "--without-mingle", "--without-gossip", "-c", "1"],
        env=bare, cwd=tmp_path, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip

    # Then it refuses, exit 2, in one line naming the variable
    line = one_error_line(done)
    assert done.returncode == 2
    assert "OPENAI_API_KEY is not set" in line and "refuses to start" in line


def test_ctrl_c_while_waiting_exits_130_in_one_line(
    env: dict[str, str], jobs: Jobs, redis_client: redis.Redis
) -> None:
    # Given `ajobs wait` blocked on a job nobody runs
    ref = jobs.submit({"kind": "cleanup", "dry_run": True})
    # (PYTHONFAULTHANDLER: should it ever hang, the SIGABRT below prints where)
    with sigint_as_from_a_terminal():
        proc = subprocess.Popen([AJOBS, "wait", ref.id], env={**env, "PYTHONFAULTHANDLER": "1"},
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        # (its own BLMOVE, told by the process's own socket: a signal sent before the child has even
        # exec'd is lost, and a client another test left blocked on this Redis is not this one)
        wait_for(lambda: blocked_in(redis_client, "blmove", proc.pid), 60, "ajobs wait to block")

        # When it is interrupted
        os.kill(proc.pid, signal.SIGINT)
        try:
            _, stderr = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            masks = signal_masks(proc.pid) + " / this test's process: " + signal_masks(os.getpid())
            os.kill(proc.pid, signal.SIGABRT)
            _, stderr = proc.communicate()
            stderr = f"{masks}\n{stderr}"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()

    # Then it exits 130 with one line
    assert proc.returncode == 130, stderr
    assert stderr.strip().splitlines() == ["error: interrupted"]


@contextlib.contextmanager
def sigint_as_from_a_terminal() -> Iterator[None]:
    """Children started in the block get SIGINT's default action, as a command typed at a terminal does.
    A suite started in the background (``make test &``, CI runners) has SIGINT ignored, as POSIX shells
    do for background jobs; the child would inherit that across exec and rightly keep ignoring Ctrl-C."""
    previous = signal.signal(
        signal.SIGINT, signal.default_int_handler
    )  # a handler is reset to default by exec
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def signal_masks(pid: int) -> str:
    """The blocked, ignored and caught signal masks of process ``pid`` (Linux's /proc), for a failure."""
    lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    return " ".join(line for line in lines if line.startswith(("SigBlk", "SigIgn", "SigCgt")))


def blocked_in(client: redis.Redis, command: str, pid: int) -> bool:
    """Whether process ``pid`` has a connection to this Redis that is blocked in ``command`` now (told by
    the address the server sees, which is the process's own end of the socket)."""
    ends = {f"{c.laddr.ip}:{c.laddr.port}" for c in psutil.Process(pid).net_connections("tcp") if c.raddr}
    return any(c.get("cmd") == command and c["addr"] in ends for c in client.client_list())


def test_submit_index_uploads_from_here_or_names_remote_paths_absolutely(
    env: dict[str, str], jobs: Jobs, emulator: EmulatorHandle, tmp_path: Path
) -> None:
    # Given a file on this machine
    path = write_files(tmp_path, 1)[0]

    # When it is submitted in upload mode
    done = ajobs(env, "submit", "index", "--new-store", "docs", "--upload", path, "--json")

    # Then the job names the uploaded file's id, not the path, and the file was uploaded once
    assert done.returncode == 0, done.stderr
    request = jobs.get(json.loads(done.stdout)["id"]).request
    assert len(request["file_ids"]) == 1 and not request.get("paths")
    assert emulator.counters()["uploads_per_filename"] == {os.path.basename(path): 1}

    # And paths only the workers see must be absolute: a relative one is refused, exit 2
    remote = ajobs(env, "submit", "index", "--new-store", "docs", "--remote-paths", "docs/a.md")
    assert remote.returncode == 2
    assert one_error_line(remote) == (
        "error: 1 path cannot be indexed: docs/a.md: a relative path; give the absolute path the workers see"
    )
