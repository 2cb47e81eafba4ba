"""Beat with celery-redbeat: two beat processes at once still fire each sweep once a period."""

from __future__ import annotations

import subprocess
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest
from helpers import WorkerProcess

from schemas.job import JobKind
from worker.client import Jobs

PERIOD_S = 2.0
BEAT_ENV = {
    "AJ_SWEEP_THREADS_S": str(PERIOD_S),
    "AJ_SWEEP_JOBS_S": str(PERIOD_S),
    "AJ_SWEEP_STORES_S": "0",
    "AJ_SWEEP_FILES_S": "0",
    "AJ_BEAT_MAX_INTERVAL": "0.5",
}


SWEEPS = ("threads,conversations", "jobs")


def sweeps(jobs: Jobs, since: float = 0.0) -> Counter[str]:
    """Clean-up jobs submitted at or after ``since``, counted by their targets."""
    fired: Counter[str] = Counter()
    for record in jobs.list(limit=1000):
        if record.kind == JobKind.CLEANUP and record.created_at >= since:
            fired[",".join(record.request["targets"])] += 1
    return fired


@pytest.mark.slow
def test_two_beats_fire_each_sweep_once_a_period(
    jobs: Jobs,
    worker: Callable[..., WorkerProcess],
    beat: Callable[..., tuple[subprocess.Popen[bytes], Path]],
) -> None:
    # Given a worker and two beat processes on one Redis, sweeps every 2 s, up and firing (start-up on
    # a loaded host takes seconds, so the window opens at the first sweep, not at the launch)
    worker()
    (_, log_a), (_, log_b) = beat("a", BEAT_ENV), beat("b", BEAT_ENV)
    deadline = time.monotonic() + 60
    while not sweeps(jobs) and time.monotonic() < deadline:
        time.sleep(0.2)
    since = time.time()

    # When they run side by side until each sweep has fired five more times
    wanted = 5
    while min(sweeps(jobs, since)[s] for s in SWEEPS) < wanted and time.monotonic() < deadline + 120:
        time.sleep(0.2)
    fired = sweeps(jobs, since)
    window = time.time() - since

    # Then each sweep was fired about once a period, not twice: five fires took about five periods (a
    # load that slows the beats or the worker only spaces them out; two firing beats would halve the time)
    for sweep in SWEEPS:
        assert wanted <= fired[sweep] <= window / PERIOD_S + 2, (fired, window)
    # ...because exactly one of the beats holds the lock and schedules
    holders = [log for log in (log_a, log_b) if "Acquired lock" in log.read_text(errors="replace")]
    assert len(holders) == 1, [log.read_text(errors="replace")[-2000:] for log in (log_a, log_b)]
