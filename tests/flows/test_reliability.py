"""Nothing stuck, lost or leaked, in process: lost polls and messages are found and re-driven, a job
that keeps stalling ends ``stalled``, a broker that is down at submit only delays a job, rate limits are
waited out, a raising tool cancels its run, an unreadable record never breaks anything."""

from __future__ import annotations

from collections.abc import Callable

import openai
import pytest
from harness import Harness
from helpers import question

from emulator.server import EmulatorHandle
from schemas.job import JobStatus
from tasks.assistants import beta
from worker.app import create_app
from worker.client import Jobs


def test_a_running_job_whose_poll_was_lost_is_found_by_the_watchdog_and_finished(harness: Harness) -> None:
    # Given a running job whose poll entry was lost (as a Redis that lost its last writes would)
    ref = harness.jobs.submit(question())
    harness.run_until_created(ref.id)
    harness.store.schedule.remove(ref.id)
    # When a watchdog pass runs once the job has had no owner for a while
    harness.clock.advance(harness.settings.ownerless_after + 1)
    found = harness.watchdog.run()
    # Then it is found, re-driven, and completes with one response, counted and announced
    assert found.ownerless == [ref.id] and found.redriven == [ref.id]
    [record] = harness.run(ref.id)
    assert record.status == JobStatus.COMPLETED and record.redrives == 1
    assert "job.redriven" in harness.events_of(ref.id)


def test_a_start_message_lost_in_the_broker_is_sent_again_once_its_queue_is_empty(
    harness: Harness, emulator: EmulatorHandle
) -> None:
    # Given a submitted job whose start message vanished from the broker
    ref = harness.jobs.submit(question())
    with harness.app.connection_for_write() as conn:
        assert conn.default_channel.queue_purge(harness.settings.queue_runs) == 1
    # When the stall bound passes with nothing waiting in its queues
    assert harness.watchdog.run().lost == []  # not yet: a message may wait a long time in a busy broker
    harness.clock.advance(harness.settings.stall_after + 1)
    found = harness.watchdog.run()
    # Then it is started again and completes, with exactly one response
    assert found.lost == [ref.id]
    [record] = harness.run(ref.id)
    assert record.status == JobStatus.COMPLETED
    assert emulator.counters()["responses_per_job"] == {ref.id: 1}


def test_a_burst_waiting_its_turn_in_the_broker_is_never_taken_for_lost(harness: Harness) -> None:
    # Given jobs whose start messages wait in the broker far longer than the stall bound
    refs = harness.jobs.submit_many([question() for _ in range(5)])
    harness.clock.advance(harness.settings.stall_after * 3)
    # When the watchdog looks
    found = harness.watchdog.run()
    # Then it leaves them alone: their queue is not empty, so their messages are only waiting
    assert found.ran and found.lost == [] and found.ownerless == []
    records = harness.run(*[r.id for r in refs])
    assert [(r.status, r.redrives) for r in records] == [(JobStatus.COMPLETED, 0)] * 5


def test_a_job_that_keeps_stalling_ends_failed_stalled_in_the_dead_letter_set(
    harness: Harness, emulator: EmulatorHandle
) -> None:
    # Given a long response whose poll keeps getting lost
    emulator.update_profile(response_duration={"kind": "fixed", "value": 3600})
    ref = harness.jobs.submit(question())
    harness.run_until_created(ref.id)
    for _ in range(harness.settings.max_redrives + 1):
        harness.store.schedule.remove(ref.id)
        harness.clock.advance(harness.settings.ownerless_after + 1)
        assert harness.watchdog.run().redriven == [ref.id]
        harness.tick()  # the poll loop sends the re-drive
        harness.worker.drain()
    # Then, re-driven as often as allowed, it ends failed with code stalled, dead-lettered, announced
    record = harness.jobs.get(ref.id)
    assert record.status == JobStatus.FAILED and record.error is not None
    assert record.error.code == "stalled"
    assert [r.id for r in harness.jobs.dead()] == [ref.id]
    assert harness.events_of(ref.id).count("job.redriven") == harness.settings.max_redrives + 1


def test_a_broker_down_at_submit_only_delays_the_job(harness: Harness, emulator: EmulatorHandle) -> None:
    # Given a producer whose broker cannot be reached
    down = harness.settings.model_copy(update={"broker_url": "redis://127.0.0.1:9/0"})
    producer = Jobs(down, harness.store, celery=create_app(down))
    # When it submits, and again with the same idempotency key
    first = producer.submit(question(idempotency_key="order-7"))
    again = producer.submit(question(idempotency_key="order-7"))
    # Then the job is accepted at once, once, and waits in the outbox
    assert first.created and (again.id, again.created) == (first.id, False)
    assert harness.jobs.get(first.id).status == JobStatus.QUEUED
    # And once the outbox's grace passes, a worker's poll loop sends its start and it completes
    [record] = harness.run(first.id)
    assert record.status == JobStatus.COMPLETED
    assert emulator.counters()["responses_per_job"] == {first.id: 1}


def test_a_rate_limit_that_names_its_wait_is_waited_out_without_spending_retries(
    harness: Harness, emulator: EmulatorHandle
) -> None:
    # Given an API that answers every create with 429 and Retry-After, more times than retries allow
    emulator.set_faults(rate_429=1.0, retry_after_s=2.0, paths=["/v1/responses"], methods=["POST"])
    ref = harness.jobs.submit(question())
    rounds = harness.settings.max_retries + 5
    harness.run(until=lambda: emulator.counters()["requests"].get("POST /v1/responses", 0) >= rounds)
    # Then the job still waits, its retry budget untouched
    record = harness.jobs.get(ref.id)
    assert not record.status.ended and record.retries == 0
    # And when the limit lifts it completes
    emulator.clear_faults()
    [record] = harness.run(ref.id)
    assert record.status == JobStatus.COMPLETED


def test_a_registered_tool_that_raises_fails_the_job_and_cancels_its_run(
    make_harness: Callable[..., Harness], emulator: EmulatorHandle
) -> None:
    # Given a worker whose registered get_weather raises, and an assistant that calls it
    harness = make_harness(AJ_TOOL_MODULES='["raising_tools"]')
    api = openai.OpenAI(base_url=emulator.base_url, api_key="sk-test")
    tools = [{"type": "function", "function": {"name": "get_weather"}}]
    assistant = beta(api).assistants.create(model="gpt-4o", tools=tools)
    ref = harness.jobs.submit(
        {
            "kind": "run",
            "backend": "assistants",
            "assistant_id": assistant.id,
            "messages": [{"role": "user", "content": "What does get_weather say for Paris?"}],
        }
    )
    # When the run asks for it
    [record] = harness.run(ref.id)
    # Then the job fails naming the tool's error, and the run no longer holds its thread until it expires
    assert record.status == JobStatus.FAILED and record.error is not None
    assert record.error.code == "tool_error" and "RuntimeError" in record.error.message
    run = beta(api).threads.runs.retrieve(record.remote["run_id"], thread_id=record.remote["thread_id"])
    assert run.status in ("cancelling", "cancelled")


@pytest.mark.parametrize("garbage", ["not json {", "[1, 2, 3]"])
def test_a_job_whose_record_is_unreadable_ends_corrupt_and_its_worker_carries_on(
    harness: Harness, garbage: str
) -> None:
    # Given two submitted jobs, one of whose records is overwritten with garbage before it starts
    broken, healthy = harness.jobs.submit_many([question(), question()])
    harness.store.redis.hset(f"aj:job:{broken.id}", "record", garbage)
    # When the worker runs them
    records = harness.run(broken.id, healthy.id)
    # Then the broken one ends failed as corrupt_record, dead-lettered, and the other completes
    assert [r.status for r in records] == [JobStatus.FAILED, JobStatus.COMPLETED]
    assert records[0].error is not None and records[0].error.code == "corrupt_record"
    assert [r.id for r in harness.jobs.dead()] == [broken.id]
    assert {r.id for r in harness.jobs.list()} == {broken.id, healthy.id}
