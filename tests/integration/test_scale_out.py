"""Scaling out on one Redis: three worker processes (distinct node names) and two beats share hundreds of
jobs (1,000 in make soak).
Every job ends once, each sweep fires once a period, and every worker's poll loop takes its share of the
polls (counted per poll loop in Redis: `Schedule.claims`)."""

from __future__ import annotations

import itertools
import re
import subprocess
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest
from helpers import WorkerProcess, set_durations, wait_for

from emulator.server import EmulatorHandle
from schemas.job import JobStatus
from worker.client import Jobs

pytestmark = [pytest.mark.slow, pytest.mark.soak, pytest.mark.timeout(600)]

WORKERS = ("w1", "w2", "w3")
PERIOD_S = 8.0
SCALE_ENV = {
    # Polls spaced as in production (first after 1 s, at most every 2 s): 1,000 runs in flight stay within
    # what the in-process emulator answers on a loaded machine.
    "AJ_POLL_FIRST": "1",
    "AJ_POLL_CAP": "2",
    "AJ_SWEEP_THREADS_S": str(PERIOD_S),
    "AJ_SWEEP_JOBS_S": str(PERIOD_S),
    "AJ_SWEEP_STORES_S": "0",
    "AJ_SWEEP_FILES_S": "0",
    "AJ_BEAT_MAX_INTERVAL": "0.5",
    # Production's time limits, not the suite's short ones (6 s soft, 8 s hard): this test is about sharing
    # the work, and on a loaded host a start group of 100 creates can outlast 6 s.
    "AJ_TASK_SOFT_TIME_LIMIT": "20",
    "AJ_TASK_TIME_LIMIT": "25",
    "AJ_VISIBILITY_TIMEOUT": "30",
}


@pytest.fixture
def beats(beat: Callable[..., tuple[subprocess.Popen[bytes], Path]]) -> list[Path]:
    """Two ``celery beat`` processes with the app's scheduler; their log files."""
    return [beat(name, SCALE_ENV)[1] for name in ("a", "b")]


SENT = re.compile(r"\[(\S+ \S+): INFO/MainProcess\] Scheduler: Sending due task (\S+) ")


def sweep_times(logs: list[Path]) -> dict[str, list[float]]:
    """When the beats sent each sweep, from their logs (a sweep's message may wait behind run work and
    expire after its period unrun: the next one supersedes it, so sends are what a period owes)."""
    sent: dict[str, list[float]] = {}
    for log in logs:
        for at, sweep in SENT.findall(log.read_text(errors="replace")):
            moment = time.mktime(time.strptime(at.split(",")[0], "%Y-%m-%d %H:%M:%S"))
            sent.setdefault(sweep, []).append(moment + int(at.split(",")[1]) / 1000)
    return {sweep: sorted(times) for sweep, times in sent.items()}


def end_events(jobs: Jobs) -> Counter[str]:
    """How many end events each job has in the event stream."""
    ends: Counter[str] = Counter()
    last = "0-0"
    while batch := jobs.events(last, count=5000):
        last = batch[-1].stream_id
        ends.update(e.job_id for e in batch if e.status.ended)
    return ends


def test_three_workers_and_two_beats_share_hundreds_of_jobs(
    jobs: Jobs,
    worker: Callable[..., WorkerProcess],
    beats: list[Path],
    emulator: EmulatorHandle,
    volume: Callable[[int, int], int],
) -> None:
    # Given three workers with distinct node names and two beats on one Redis, runs of 1-3 s
    set_durations(emulator, 1, 3)
    for name in WORKERS:
        worker(name, extra_env=SCALE_ENV)
    # When hundreds of runs are submitted (a thousand in make soak)
    count = volume(300, 1000)
    question = {"kind": "run", "backend": "responses", "model": "gpt-4o"}
    refs = jobs.submit_many(
        [{**question, "messages": [{"role": "user", "content": f"q{i}"}]} for i in range(count)]
    )
    began = time.time()
    ids = [r.id for r in refs]

    def left() -> int:
        return sum(1 for r in jobs.store.jobs.get_many(ids) if r is None or not r.status.ended)

    wait_for(lambda: left() == 0, 420, "every job to end")
    window = time.time() - began

    # Then every job completed, and ended once: one end event each, one response each
    records = jobs.store.jobs.get_many(ids)
    assert Counter(r.status for r in records if r) == {JobStatus.COMPLETED: count}
    ends = end_events(jobs)
    assert {i: ends[i] for i in ids if ends[i] != 1} == {}
    responses = emulator.counters()["responses_per_job"]
    assert {i: responses.get(i) for i in ids if responses.get(i) != 1} == {}
    # and each sweep was sent once a period, never twice in one: one beat held the lock
    fired = sweep_times(beats)
    for sweep in ("cleanup-threads", "cleanup-jobs"):
        times = fired.get(sweep, [])
        gaps = [b - a for a, b in itertools.pairwise(times)]
        assert len(times) >= window / PERIOD_S - 2, (sweep, len(times), window)
        assert min(gaps, default=PERIOD_S) > PERIOD_S / 2, (sweep, gaps)
    assert sum("Acquired lock" in log.read_text(errors="replace") for log in beats) == 1
    # and every worker's poll loop took a share of the polls, none under a twentieth: a loaded host is not
    # fair, and over a few hundred jobs a loop that got less CPU for a while weighs more (one took 44 of 458
    # beside two CPU hogs; a loop left out would take none)
    claims = {name.split("@")[0]: n for name, n in jobs.store.schedule.claims().items()}
    total = sum(claims.values())
    assert set(claims) == set(WORKERS), claims
    assert all(n >= 0.05 * total for n in claims.values()), claims
    print(f"entries claimed per poll loop: {claims}; sweeps sent: { {k: len(v) for k, v in fired.items()} }")
