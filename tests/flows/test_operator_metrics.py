"""What an operator reads from ``ajobs metrics`` after real jobs ran: the poll loop's requests counted with
the tasks' ones, and how long jobs took and waited, per kind and backend."""

from __future__ import annotations

import pytest
from harness import Harness
from helpers import Ask
from prometheus_client import CollectorRegistry, generate_latest

from worker.metrics import EventTally, JobTimings, flush_process


def sample(text: str, name: str) -> float:
    """The value of the sample ``name`` (with its labels, as exposed) in a scrape."""
    line = next(line for line in text.splitlines() if line.startswith(name + " "))
    return float(line.split()[-1])


@pytest.mark.parametrize("backend", ["responses"])
def test_the_exporter_counts_polls_and_observes_job_durations_and_queue_waits(
    harness: Harness, ask: Ask
) -> None:
    # Given an exporter's tally following the events, and two runs and a dry-run clean-up run to their end
    registry = CollectorRegistry()
    tally = EventTally(harness.store.jobs, JobTimings(registry))
    refs = [harness.jobs.submit(ask(f"question {i}")) for i in range(2)]
    refs.append(harness.jobs.submit({"kind": "cleanup", "dry_run": True, "targets": ["jobs"]}))
    harness.run(*[r.id for r in refs])
    flush_process()

    # When it reads the events and is scraped
    tally.take(harness.store.jobs.events(count=10_000))
    text = generate_latest(registry).decode()

    # Then each job's duration is observed per kind and backend, and its wait for a worker per kind
    assert sample(text, 'aj_job_duration_seconds_count{backend="responses",kind="run"}') == 2
    assert sample(text, 'aj_job_duration_seconds_count{backend="none",kind="cleanup"}') == 1
    assert sample(text, 'aj_job_queue_wait_seconds_count{kind="run"}') == 2
    assert sample(text, 'aj_job_duration_seconds_sum{backend="responses",kind="run"}') > 0
    # ...the status changes counted once per status entered (progress and the like are not changes)
    assert tally.snapshot()[("run", "completed")] == 2 and tally.snapshot()[("run", "queued")] == 2
    # ...and the poll loop's retrieves are among the API requests, as the tasks' creates are
    counts = harness.store.counters.all()
    assert counts.get("GET /responses/{id}|ok", 0) >= 2, counts
    assert counts.get("POST /responses|ok", 0) >= 2, counts
