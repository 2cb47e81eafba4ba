"""Run jobs with real worker processes: only what processes show. A worker SIGKILLed while it holds polls
or while it is inside a start, and a slow API against real task time limits. Everything else about runs
is in tests/flows/test_runs.py, in process.

A scenario runs on each backend (the `backend` fixture in conftest.py) where the backends recover
differently: a start cut off mid-create. Where what is shown is the worker's alone (poll leases, time
limits), one backend is enough; tests/flows/test_runs.py runs the same paths on both, in process.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest
from helpers import Ask, WorkerProcess, created_per_job, has_remote_run, set_durations, wait_for

from emulator.server import EmulatorHandle
from schemas.job import JobStatus
from worker.client import Jobs


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["assistants"])  # poll leases are the same for every backend
def test_a_killed_worker_s_polls_are_finished_by_another(
    jobs: Jobs, worker: Callable[..., WorkerProcess], ask: Ask, emulator: EmulatorHandle, backend: str
) -> None:
    # Given 20 long runs whose polls one worker holds
    set_durations(emulator, 3, 6)
    doomed = worker("doomed")
    refs = jobs.submit_many([ask(f"long {i}") for i in range(20)])
    # Every run created and recorded: from here on the doomed worker holds only polls.
    wait_for(lambda: all(has_remote_run(jobs.get(r.id)) for r in refs), 30, "all runs to be created")
    # When it is killed (it held every poll: no other worker was running) and another starts
    doomed.kill()
    killed_at = time.monotonic()
    worker("survivor")
    records = [jobs.wait(r.id, timeout=60) for r in refs]
    # Then the survivor finishes every job within a minute, with no second run for any
    assert time.monotonic() - killed_at < 60
    assert all(r.status == JobStatus.COMPLETED for r in records), [(r.status, r.error) for r in records]
    assert created_per_job(emulator, backend) == {r.id: 1 for r in refs}


@pytest.mark.slow
def test_a_worker_killed_mid_start_is_recovered_without_a_second_run(
    jobs: Jobs, worker: Callable[..., WorkerProcess], ask: Ask, emulator: EmulatorHandle, backend: str
) -> None:
    # Given every create is slow, so the kill lands while the start task is inside its API calls
    emulator.set_faults(latency_ms=1500, methods=["POST"])
    doomed = worker("doomed", concurrency=1)
    ref = jobs.submit(ask("slow start"))
    wait_for(lambda: jobs.get(ref.id).status == JobStatus.RUNNING, 20, "the start task to begin")
    # When the worker is killed there and another starts
    doomed.kill()
    killed_at = time.monotonic()
    worker("survivor")
    record = jobs.wait(ref.id, timeout=60)
    # Then the job completes within a minute with exactly one remote run
    assert time.monotonic() - killed_at < 60
    assert record.status == JobStatus.COMPLETED, record.error
    assert created_per_job(emulator, backend) == {ref.id: 1}


@pytest.mark.parametrize("backend", ["responses"])  # the time limits are the task's, not a backend's
def test_a_slow_api_never_strands_jobs_of_a_start_message(
    jobs: Jobs, worker: Callable[..., WorkerProcess], ask: Ask, emulator: EmulatorHandle
) -> None:
    # Given every create is slow and the soft time limit short: one start message's 20 jobs cannot all be
    # started within one task
    emulator.set_faults(latency_ms=300, methods=["POST"])
    worker(extra_env={"AJ_TASK_SOFT_TIME_LIMIT": "2", "AJ_TASK_TIME_LIMIT": "3"})
    # When they are submitted together
    refs = jobs.submit_many([ask(f"slow {i}") for i in range(20)])
    deadline = time.monotonic() + 60
    records = [jobs.wait(r.id, timeout=max(deadline - time.monotonic(), 0.1)) for r in refs]
    # Then every one completes
    assert [r.status for r in records] == [JobStatus.COMPLETED] * 20, [r.error for r in records if r.error]
