"""Where a worker's poll loop runs: a process of its own by default, which lives exactly as long as its
worker; a thread of the main process with AJ_POLL_PROCESS=false. Both drive a run job to its end."""

from __future__ import annotations

import contextlib
import os
import re
import signal
from collections.abc import Callable

import psutil
import pytest
from helpers import Ask, WorkerProcess, wait_for

from schemas.job import JobStatus
from worker.client import Jobs


def poll_processes(handle: WorkerProcess) -> list[psutil.Process]:
    """The worker's live poll loop processes: the children its log names as the poll loop (the others are
    the pool's)."""
    started = {int(pid) for pid in re.findall(r"poll loop started in process (\d+)", handle.log.read_text())}
    return [c for c in psutil.Process(handle.proc.pid).children() if c.pid in started and alive(c)]


def alive(proc: psutil.Process) -> bool:
    """Whether the process runs (a zombie has exited)."""
    try:
        return proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


@pytest.mark.parametrize("backend", ["responses"])  # where the loop runs is the same for every backend
@pytest.mark.parametrize("in_process", ["true", "false"])
def test_a_run_job_ends_with_the_poll_loop_in_its_own_process_or_a_thread(
    jobs: Jobs, worker: Callable[..., WorkerProcess], ask: Ask, in_process: str, backend: str
) -> None:
    # Given a worker with its poll loop in a process of its own, or in a thread
    handle = worker(extra_env={"AJ_POLL_PROCESS": in_process})

    # When a run job is submitted
    record = jobs.wait(jobs.submit(ask("hello")).id, timeout=60)

    # Then it completes either way, polled by the loop where the setting put it
    assert record.status == JobStatus.COMPLETED, record.error
    assert len(poll_processes(handle)) == (1 if in_process == "true" else 0)
    # ...and a loop in its own process logs into the worker's log file, as the worker does, and runs
    # before the worker says it is ready (a worker that says so polls)
    if in_process == "true":
        log = handle.log.read_text()
        running = re.search(r"INFO/aj-poll-loop\] poll loop of w1@\S+ running", log)
        assert running is not None, log
        assert running.start() < log.index("ready."), log


@pytest.mark.slow
def test_the_poll_loop_s_process_ends_when_its_worker_is_killed(worker: Callable[..., WorkerProcess]) -> None:
    # Given a worker and its poll loop's process
    handle = worker()
    group = os.getpgid(handle.proc.pid)
    loops = wait_for(lambda: poll_processes(handle), 60, "the poll loop's process")
    try:
        # When the worker's main process alone is SIGKILLed (nothing can tell its children)
        handle.proc.kill()
        handle.proc.wait(10)

        # Then the poll loop's process ends too: no orphan goes on claiming polls
        _, alive = psutil.wait_procs(loops, timeout=30)
        assert alive == []
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(group, signal.SIGKILL)  # the pool's orphans


@pytest.mark.parametrize("backend", ["responses"])
def test_a_poll_loop_process_that_dies_is_started_again_and_jobs_still_end(
    jobs: Jobs, worker: Callable[..., WorkerProcess], ask: Ask, backend: str
) -> None:
    # Given a worker whose poll loop's process is SIGKILLed (as the OOM killer would)
    handle = worker()
    first = wait_for(lambda: poll_processes(handle), 60, "the poll loop's process")[0]
    first.kill()

    # When a run job is submitted
    record = jobs.wait(jobs.submit(ask("hello")).id, timeout=90)

    # Then the worker started a new poll loop, which drove the job to its end
    assert record.status == JobStatus.COMPLETED, record.error
    assert [p.pid for p in poll_processes(handle)] not in ([], [first.pid])
    assert "starting it again" in handle.log.read_text(errors="replace")
