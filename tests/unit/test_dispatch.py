"""Sending through the outbox (worker.dispatch): which jobs a message carries, the entry that would send
it for each job alone, and a send whose publish fails leaving the message to the poll loop."""

from __future__ import annotations

from typing import Any

import pytest
import redis

from worker.dispatch import Dispatcher, job_ids_of, per_job
from worker.polls import TaskDue
from worker.store.schedule import Schedule

BODY = {"status": "completed"}


@pytest.mark.parametrize(
    ("args", "job_ids"),
    [
        ([["job_1", "job_2"]], ["job_1", "job_2"]),  # a start message
        (["job_1", "deadline"], ["job_1"]),  # a cancel
        ([[["job_1", BODY], ["job_2", BODY]]], ["job_1", "job_2"]),  # a batched finish
        ([("job_1",)], ["job_1"]),
        ([{"job": "job_1"}], []),
        ([], []),
    ],
)
def test_a_message_s_jobs_are_named_by_its_first_argument(args: list[Any], job_ids: list[str]) -> None:
    assert job_ids_of(args) == job_ids


def test_a_message_for_many_jobs_becomes_one_entry_per_job_that_sends_it_for_that_job_alone() -> None:
    assert per_job("aj.run.start", [["job_1", "job_2"]]) == {
        "job_1": TaskDue("aj.run.start", [["job_1"]]),
        "job_2": TaskDue("aj.run.start", [["job_2"]]),
    }
    assert per_job("aj.run.cancel", ["job_1", "deadline"]) == {
        "job_1": TaskDue("aj.run.cancel", ["job_1", "deadline"])
    }


def test_a_sent_message_parks_its_jobs_and_a_failed_publish_leaves_them_due_after_the_grace(
    redis_client: redis.Redis,
) -> None:
    schedule = Schedule(redis_client)
    published: list[tuple[str, list[Any], str]] = []

    # Given a broker that takes the message: each job's entry is parked under its task id, never due
    task_id = Dispatcher(schedule, lambda *m: published.append(m), grace_s=10).send(
        "aj.run.start", [["a", "b"]]
    )
    assert published == [("aj.run.start", [["a", "b"]], task_id)]
    assert schedule.next_due_in() is None
    assert {job for job, _, sent in schedule.parked_before(10**13) if sent == task_id} == {"a", "b"}

    # Given a broker that is down: the send raises, and the message waits in the outbox for the grace
    def down(*message: object) -> None:
        raise ConnectionError("broker down")

    with pytest.raises(ConnectionError):
        Dispatcher(schedule, down, grace_s=10).send("aj.run.cancel", ["c", "requested"])
    assert schedule.entry("c") == TaskDue("aj.run.cancel", ["c", "requested"])
    due_in = schedule.next_due_in()
    assert due_in is not None and 9 < due_in <= 10
