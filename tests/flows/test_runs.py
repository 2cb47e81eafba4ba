"""Run jobs end to end, in process (tests/harness.py): the real Redis and broker, the emulator over HTTP
with the real openai client, the clock moved instead of waited on.

One suite for both backends: a test taking `ask` or `backend` runs on each (the fixtures in conftest.py);
``@pytest.mark.parametrize("backend", [...])`` narrows a test to the backend it is about.
"""

from __future__ import annotations

import asyncio
import itertools
import re
from collections.abc import Callable

import openai
import pytest
import redis.asyncio as aioredis
from harness import Harness
from helpers import (
    Ask,
    NewThread,
    created_per_job,
    has_remote_run,
    remote_status,
    set_durations,
    soft_limit_after,
)
from pydantic import ValidationError

from emulator.server import EmulatorHandle
from schemas.job import JobStatus
from tasks.assistants import beta
from worker.async_api import AsyncApi
from worker.client import ToolOutputsRejected
from worker.polls import TaskDue
from worker.store import keys
from worker.store.schedule import AsyncSchedule


def posts(emulator: EmulatorHandle) -> int:
    """POST requests the API has served (or refused)."""
    return sum(n for route, n in emulator.counters()["requests"].items() if route.startswith("POST"))


def polls(emulator: EmulatorHandle) -> int:
    """Retrievals of a run or response (the poll loop's requests)."""
    requests = emulator.counters()["requests"]
    return requests.get("GET /v1/threads/{thread_id}/runs/{run_id}", 0) + requests.get(
        "GET /v1/responses/{response_id}", 0
    )


# --- completion -------------------------------------------------------------------------------
def test_a_plain_question_completes_with_text_and_usage(
    harness: Harness, ask: Ask, emulator: EmulatorHandle, backend: str
) -> None:
    # Given a question
    ref = harness.jobs.submit(ask("What is the capital of France?"))
    # When the worker runs it
    [record] = harness.run(ref.id)
    # Then it completes with the answer and its usage, from one remote run, announced in three events
    assert record.status == JobStatus.COMPLETED, record.error
    assert record.result is not None and "capital of France" in record.result["text"]
    assert record.usage is not None and record.usage.total_tokens > 0
    assert created_per_job(emulator, backend) == {ref.id: 1}
    assert harness.events_of(ref.id) == ["job.queued", "job.started", "job.completed"]


def test_runs_that_end_together_finish_together_each_with_its_own_answer(
    harness: Harness, ask: Ask, emulator: EmulatorHandle, backend: str
) -> None:
    # Given thirty questions whose runs all last the same second, so their ends are handed over together
    set_durations(emulator, 1.0)
    refs = harness.jobs.submit_many([ask(f"question <{i}>") for i in range(30)])
    # When they run
    records = harness.run(*[r.id for r in refs])
    # Then each completes with the answer to its own question (the group's results are not crossed), and an
    # Assistants run's messages were listed once a job
    for i, record in enumerate(records):
        assert record.status == JobStatus.COMPLETED, record.error
        assert record.result is not None and f"question <{i}>" in record.result["text"], (i, record.result)
    listed = emulator.counters()["requests"].get("GET /v1/threads/{thread_id}/messages", 0)
    assert listed == (30 if backend == "assistants" else 0)


@pytest.mark.soak
def test_many_jobs_on_one_thread_run_in_submission_order(
    harness: Harness,
    ask: Ask,
    new_thread: NewThread,
    emulator: EmulatorHandle,
    volume: Callable[[int, int], int],
) -> None:
    # Given twenty questions on one thread (fifty in make soak)
    thread = new_thread()
    refs = [harness.jobs.submit(ask(f"question {i}", **thread)) for i in range(volume(20, 50))]
    # When they run
    records = harness.run(*[r.id for r in refs])
    # Then all complete, one at a time, in the order they were submitted, and the API never refused one
    assert all(r.status == JobStatus.COMPLETED for r in records), {r.id: r.error for r in records if r.error}
    started = [r.started_at or 0 for r in records]
    assert started == sorted(started), "jobs on one thread started out of submission order"
    for earlier, later in itertools.pairwise(records):
        assert (earlier.finished_at or 0) <= (later.started_at or 0), (
            "two runs were active on the thread at once"
        )
    assert "400" not in emulator.counters()["statuses"], "the API refused a run for an active one"


@pytest.mark.slow
@pytest.mark.soak
def test_tens_of_jobs_survive_a_storm_of_429s_503s_and_drops(
    harness: Harness,
    ask: Ask,
    new_thread: NewThread,
    emulator: EmulatorHandle,
    backend: str,
    volume: Callable[[int, int], int],
) -> None:
    # Given 60 jobs on 6 threads (200 on 20 in make soak), and an API that answers 20% of requests 429
    # (naming its wait), 10% 503 and drops 3% of connections
    count = volume(60, 200)
    threads = [new_thread() for _ in range(count // 10)]
    emulator.set_faults(rate_429=0.2, retry_after_s=0.3, rate_503=0.1, rate_drop=0.03)
    refs = harness.jobs.submit_many([ask(f"storm {i}", **threads[i % len(threads)]) for i in range(count)])
    # When they run
    records = harness.run(*[r.id for r in refs], max_steps=20_000)
    emulator.clear_faults()
    # Then every one completes, with exactly one remote run each, and no request came before its Retry-After
    failed = {r.id: (r.status, r.error) for r in records if r.status != JobStatus.COMPLETED}
    assert not failed, failed
    counters = emulator.counters()
    assert counters["faults"].get("429", 0) > count / 4, counters["faults"]
    assert counters["early_retries"] == 0, counters["early_retries_per_route"]
    assert created_per_job(emulator, backend) == {r.id: 1 for r in refs}


@pytest.mark.parametrize("backend", ["responses"])  # the slicing is the start task's, not a backend's
def test_a_start_message_slower_than_its_slice_passes_the_rest_on_and_strands_none(
    make_harness: Callable[..., Harness], ask: Ask, emulator: EmulatorHandle
) -> None:
    # Given jobs started one group of one at a time, and creates so slow (two of 0.1 s a job) that one start
    # message's 8 jobs take several of its 0.25 s slices
    harness = make_harness(AJ_START_CONCURRENCY="1")
    emulator.set_faults(latency_ms=100, methods=["POST"])
    refs = harness.jobs.submit_many([ask(f"slow {i}") for i in range(8)])
    # When they run
    records = harness.run(*[r.id for r in refs])
    # Then the start went on in further messages, and every job completed with one response
    assert harness.worker.ran.count("aj.run.start") > 1
    assert [r.status for r in records] == [JobStatus.COMPLETED] * 8
    assert created_per_job(emulator, "responses") == {r.id: 1 for r in refs}


def test_a_start_that_finds_its_step_lease_held_comes_back_when_it_lapses_and_creates_once(
    harness: Harness, ask: Ask, emulator: EmulatorHandle, backend: str
) -> None:
    # Given a job whose step lease a worker killed inside its start still holds, as when RabbitMQ gives
    # the start message to another worker at once
    ref = harness.jobs.submit(ask("held"))
    lease = keys.LEASE.format(job_id=ref.id)
    harness.store.redis.set(lease, "killed-holder", ex=30)
    # When the start message runs
    harness.worker.drain()
    # Then it left the job to come back when the lease lapses, not now and not never
    entry = harness.store.schedule.entry(ref.id)
    assert isinstance(entry, TaskDue) and entry.task == "aj.run.start", entry
    assert (harness.store.schedule.next_due_in() or 0) > 10
    # ...and once the lease has lapsed, the job completes with one remote run
    harness.store.redis.delete(lease)
    [record] = harness.run(ref.id)
    assert harness.worker.ran.count("aj.run.start") == 2
    assert record.status == JobStatus.COMPLETED, record.error
    assert created_per_job(emulator, backend) == {ref.id: 1}


def test_polls_held_by_a_poller_that_died_are_taken_over_once_their_lease_ends(
    harness: Harness, ask: Ask, emulator: EmulatorHandle, backend: str
) -> None:
    # Given five runs under way that outlast the poll lease, whose polls (all due: none waits longer than the
    # poll cap) a poller claimed and then died holding, writing nothing
    set_durations(emulator, 2 * harness.settings.poll_lease)
    refs = harness.jobs.submit_many([ask(f"long {i}") for i in range(5)])
    ids = [r.id for r in refs]
    harness.run(*ids, until=lambda: all(has_remote_run(r) for r in harness.records(ids)))
    harness.clock.advance(max(harness.settings.poll_first, harness.settings.poll_cap) + 0.01)
    claimed_at = harness.clock.now()
    held = asyncio.run(claim_and_die(harness.settings.redis_url, harness.settings.poll_lease))
    assert sorted(held) == sorted(ids)
    assert harness.tick() == 0  # held: no other poller sees them
    # When the loop carries on
    records = harness.run(*ids)
    # Then once the lease ends another poll takes them over, and every job completes with one run
    assert harness.clock.now() >= claimed_at + harness.settings.poll_lease
    assert [r.status for r in records] == [JobStatus.COMPLETED] * 5
    assert created_per_job(emulator, backend) == dict.fromkeys(ids, 1)


async def claim_and_die(redis_url: str, lease_s: float) -> list[str]:
    """Claim every due poll as a poller would, and never settle them; the job ids claimed."""
    client = aioredis.Redis.from_url(redis_url)
    try:
        return [c.job_id for c in await AsyncSchedule(client).claim(100, lease_s)]
    finally:
        await client.aclose()


# --- tool calls -------------------------------------------------------------------------------
def test_tool_outputs_from_the_producer_in_two_rounds(harness: Harness, ask: Ask) -> None:
    # Given a run that calls get_time, then get_weather, and a producer that answers them itself
    ref = harness.jobs.submit(ask("use get_time then get_weather", run_tools=False))
    # When it asks for the first, announced
    first = harness.run_until_status(ref.id, JobStatus.REQUIRES_ACTION)
    assert [c.name for c in first.tool_calls] == ["get_time"]
    assert "job.requires_action" in harness.events_of(ref.id)
    # And is answered, then asks for the second and is answered
    harness.jobs.submit_tool_outputs(ref.id, [{"tool_call_id": first.tool_calls[0].id, "output": "noon"}])
    second = harness.run_until_status(ref.id, JobStatus.REQUIRES_ACTION)
    assert [c.name for c in second.tool_calls] == ["get_weather"]
    harness.jobs.submit_tool_outputs(ref.id, [{"tool_call_id": second.tool_calls[0].id, "output": "rain"}])
    # Then it completes with an answer built on both outputs
    [record] = harness.run(ref.id)
    assert record.status == JobStatus.COMPLETED, record.error
    assert record.result is not None and "noon" in record.result["text"] and "rain" in record.result["text"]


def test_a_registered_worker_function_answers_without_a_producer(harness: Harness, ask: Ask) -> None:
    # Given a worker with get_weather registered (devkit.example_tools)
    # When a run calls it
    record = harness.submit_and_run(ask("what does get_weather say?"))
    # Then the worker answers it and the run completes with the function's output in its text
    assert record.status == JobStatus.COMPLETED, record.error
    assert record.result is not None and "sunny, 21 C" in record.result["text"]


def test_a_bad_set_of_outputs_is_refused_and_the_job_keeps_waiting(
    harness: Harness, ask: Ask, emulator: EmulatorHandle
) -> None:
    # Given a job waiting for the output of one call
    ref = harness.jobs.submit(ask("use get_time", run_tools=False))
    call_id = harness.run_until_status(ref.id, JobStatus.REQUIRES_ACTION).tool_calls[0].id
    sent_before = posts(emulator)
    # When a producer answers an unknown call, or the right call twice
    with pytest.raises(ToolOutputsRejected, match=f"unknown tool_call_id call_nope; no output for {call_id}"):
        harness.jobs.submit_tool_outputs(ref.id, [{"tool_call_id": "call_nope", "output": "x"}])
    twice = [{"tool_call_id": call_id, "output": "noon"}] * 2
    with pytest.raises(ValidationError, match=f"duplicate tool_call_id '{call_id}'"):
        harness.jobs.submit_tool_outputs(ref.id, twice)
    # Then both are refused, nothing reaches the API, and the job still waits
    harness.worker.drain()
    assert posts(emulator) == sent_before
    assert harness.jobs.get(ref.id).status == JobStatus.REQUIRES_ACTION
    # And the right answer completes it
    harness.jobs.submit_tool_outputs(ref.id, [{"tool_call_id": call_id, "output": "noon"}])
    assert harness.run(ref.id)[0].status == JobStatus.COMPLETED


@pytest.mark.parametrize("backend", ["assistants"])  # a response that asks for function calls never expires
def test_a_run_left_waiting_past_its_expiry_ends_expired(
    harness: Harness, ask: Ask, emulator: EmulatorHandle
) -> None:
    # Given runs that expire two seconds after they ask for tool outputs, and a job whose producer never
    # answers
    emulator.update_profile(run_expires_after_s=2)
    ref = harness.jobs.submit(ask("use get_time", run_tools=False))
    harness.run_until_status(ref.id, JobStatus.REQUIRES_ACTION)
    # When its run expires
    [record] = harness.run(ref.id)
    # Then the job ends expired, saying so
    assert record.status == JobStatus.EXPIRED
    assert record.error is not None and record.error.code == "expired"


def test_a_job_left_waiting_for_outputs_past_its_deadline_ends_timed_out(harness: Harness, ask: Ask) -> None:
    # Given a job with a one-minute deadline whose producer never answers its tool call
    ref = harness.jobs.submit(ask("use get_time", run_tools=False, deadline_s=60))
    harness.run_until_status(ref.id, JobStatus.REQUIRES_ACTION)
    # When the deadline passes
    [record] = harness.run(ref.id)
    # Then it ends timed out
    assert record.status == JobStatus.TIMED_OUT
    assert record.error is not None and record.error.code == "deadline_exceeded"


# --- how a remote run ends --------------------------------------------------------------------
@pytest.mark.parametrize(
    ("outcome", "code", "message"),
    [("failed", "server_error", "went wrong|failed to generate"), ("incomplete", "incomplete", "max_")],
)
def test_a_run_that_ends_badly_fails_the_job_with_the_api_s_reason(
    harness: Harness, ask: Ask, emulator: EmulatorHandle, backend: str, outcome: str, code: str, message: str
) -> None:
    # Given an API whose every run (or response) ends failed, or incomplete
    share = f"p_run_{outcome}" if backend == "assistants" else f"p_response_{outcome}"
    emulator.update_profile(**{share: 1.0})
    # When a job runs
    record = harness.submit_and_run(ask("hello"))
    # Then it fails with the API's reason, not dead-lettered (a retry would fail the same way)
    assert record.status == JobStatus.FAILED and record.error is not None
    assert record.error.code == code
    assert re.search(message, record.error.message), record.error.message
    assert harness.jobs.dead() == []
    if outcome == "incomplete":
        assert record.result is not None and record.result["incomplete_details"]["reason"].startswith("max_")


def test_polls_that_keep_failing_end_the_job_failed_once_its_retries_are_spent(
    make_harness: Callable[..., Harness], ask: Ask, emulator: EmulatorHandle
) -> None:
    # Given a worker allowed two retries, and an API that answers every poll 500
    harness = make_harness(AJ_MAX_RETRIES="2")
    emulator.set_faults(rate_500=1.0, methods=["GET"])
    # When a job runs
    record = harness.submit_and_run(ask("hello"))
    # Then it was polled exactly three times, then failed with the API's error, dead-lettered as retryable
    assert polls(emulator) == 3
    assert record.status == JobStatus.FAILED and record.error is not None and record.error.retryable
    assert [r.id for r in harness.jobs.dead()] == [record.id]


def test_a_poll_rate_limit_that_names_its_wait_is_waited_out_without_spending_retries(
    make_harness: Callable[..., Harness], ask: Ask, emulator: EmulatorHandle
) -> None:
    # Given a worker allowed two retries, and an API that answers every poll 429 with a Retry-After
    harness = make_harness(AJ_MAX_RETRIES="2")
    emulator.set_faults(rate_429=1.0, retry_after_s=5.0, methods=["GET"])
    ref = harness.jobs.submit(ask("hello"))
    # When it has been polled far more often than its retries allow
    harness.run(ref.id, until=lambda: polls(emulator) >= 10)
    # Then it still runs, never polled before the wait it was given
    assert harness.jobs.get(ref.id).status == JobStatus.RUNNING
    assert emulator.counters()["early_retries"] == 0
    # And once the limit lifts it completes
    emulator.clear_faults()
    assert harness.run(ref.id)[0].status == JobStatus.COMPLETED


# --- cancel, deadline, errors -----------------------------------------------------------------
def test_cancel_of_a_queued_job_never_reaches_the_api(
    harness: Harness, ask: Ask, new_thread: NewThread, emulator: EmulatorHandle, backend: str
) -> None:
    # Given two jobs on one thread, the second waiting for the first
    thread = new_thread()
    first = harness.jobs.submit(ask("first", **thread))
    second = harness.jobs.submit(ask("second", **thread))
    harness.run_until_status(first.id, JobStatus.RUNNING)
    # When the waiting one is cancelled
    assert harness.jobs.cancel(second.id).status == JobStatus.CANCELLED
    # Then it is cancelled at once and never reaches the API, and the first completes
    assert harness.run(first.id, second.id)[0].status == JobStatus.COMPLETED
    assert harness.jobs.get(second.id).status == JobStatus.CANCELLED
    assert created_per_job(emulator, backend) == {first.id: 1}


def test_cancel_of_a_running_job_cancels_its_remote_run(
    harness: Harness, ask: Ask, api: openai.OpenAI, emulator: EmulatorHandle
) -> None:
    # Given a long run under way
    set_durations(emulator, 20)
    ref = harness.jobs.submit(ask("a long one"))
    harness.run(ref.id, until=lambda: has_remote_run(harness.jobs.get(ref.id)))
    # When it is cancelled
    harness.jobs.cancel(ref.id)
    [record] = harness.run(ref.id)
    # Then the job ends cancelled and so does its remote run
    assert record.status == JobStatus.CANCELLED
    assert remote_status(api, record) == "cancelled"


def test_cancel_of_a_job_waiting_for_tool_outputs_ends_it_cancelled(
    harness: Harness, ask: Ask, api: openai.OpenAI, backend: str
) -> None:
    # Given a job waiting for the output of its tool call
    ref = harness.jobs.submit(ask("use get_time", run_tools=False))
    harness.run_until_status(ref.id, JobStatus.REQUIRES_ACTION)
    # When it is cancelled
    harness.jobs.cancel(ref.id)
    [record] = harness.run(ref.id)
    # Then it ends cancelled, and a run (which still holds its thread) is cancelled too; a response that
    # asked for function calls has already completed
    assert record.status == JobStatus.CANCELLED and record.tool_calls == []
    assert remote_status(api, record) == ("cancelled" if backend == "assistants" else "completed")


def test_a_deadline_ends_the_job_timed_out_and_cancels_the_run(
    harness: Harness, ask: Ask, api: openai.OpenAI, emulator: EmulatorHandle
) -> None:
    # Given a run that takes 30 s and a job with a 2 s deadline
    set_durations(emulator, 30)
    # When the deadline passes
    record = harness.submit_and_run(ask("too slow", deadline_s=2))
    # Then the job ends timed out and its remote run is cancelled
    assert record.status == JobStatus.TIMED_OUT
    assert record.error is not None and record.error.code == "deadline_exceeded"
    assert remote_status(api, record) == "cancelled"


@pytest.mark.parametrize("backend", ["responses"])  # a background response is what can stay queued
def test_a_response_stuck_queued_is_cancelled_and_created_again_once_then_completes(
    make_harness: Callable[..., Harness], ask: Ask, api: openai.OpenAI, emulator: EmulatorHandle
) -> None:
    # Given responses that stay queued for ten minutes, and a bound of 30 s on staying queued
    harness = make_harness(AJ_QUEUED_STUCK_AFTER="30")
    emulator.update_profile(response_queued_s=600)
    ref = harness.jobs.submit(ask("stuck at first"))
    stuck = harness.run_until_created(ref.id).remote["response_id"]
    # and the API healthy again for the responses created after it
    emulator.update_profile(response_queued_s=0.05)
    # When the job runs on past the bound
    [record] = harness.run(ref.id)
    # Then the stuck response was cancelled and created again once, said on the job, and the job completed
    assert record.status == JobStatus.COMPLETED, record.error
    assert record.remote["requeued_from"] == stuck and record.remote["response_id"] != stuck
    assert api.responses.retrieve(stuck).status == "cancelled"
    assert created_per_job(emulator, "responses") == {ref.id: 2}
    assert "job.requeued" in harness.events_of(ref.id)


@pytest.mark.parametrize("backend", ["responses"])
def test_a_requeue_cut_off_by_its_soft_time_limit_after_the_create_makes_no_third_response(
    make_harness: Callable[..., Harness], ask: Ask, emulator: EmulatorHandle, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a response stuck queued, and time limits whose hold's grace outlasts a loaded host
    harness = make_harness(
        AJ_QUEUED_STUCK_AFTER="30",
        AJ_TASK_SOFT_TIME_LIMIT="6",
        AJ_TASK_TIME_LIMIT="60",
        AJ_VISIBILITY_TIMEOUT="70",
    )
    emulator.update_profile(response_queued_s=600)
    ref = harness.jobs.submit(ask("stuck at first"))
    harness.run_until_created(ref.id)
    emulator.update_profile(response_queued_s=0.05)
    # When the soft time limit strikes as the server makes the response that replaces it
    with soft_limit_after(monkeypatch, AsyncApi, "post", first="/responses") as interrupted:
        [record] = harness.run(ref.id)
    # Then the job completed on that response: the retried message found the job requeued already
    assert [made["id"] for made in interrupted] == [record.remote["response_id"]]
    assert record.status == JobStatus.COMPLETED, record.error
    assert created_per_job(emulator, "responses") == {ref.id: 2}


@pytest.mark.parametrize("backend", ["responses"])
def test_a_response_stuck_queued_twice_fails_the_job_with_a_clear_code(
    make_harness: Callable[..., Harness], ask: Ask, api: openai.OpenAI, emulator: EmulatorHandle
) -> None:
    # Given responses that stay queued for ten minutes, and a bound of 30 s on staying queued
    harness = make_harness(AJ_QUEUED_STUCK_AFTER="30")
    emulator.update_profile(response_queued_s=600)
    # When a job runs on past the bound twice
    record = harness.submit_and_run(ask("stuck for good"))
    # Then it fails with stuck_queued after one more response, and neither is left queued on the API
    assert record.status == JobStatus.FAILED
    assert record.error is not None and record.error.code == "stuck_queued"
    assert "30 s" in record.error.message
    assert created_per_job(emulator, "responses") == {record.id: 2}
    responses = [record.remote["requeued_from"], record.remote["response_id"]]
    assert [api.responses.retrieve(r).status for r in responses] == ["cancelled", "cancelled"]


def test_a_missing_assistant_fails_at_once_naming_it(harness: Harness, emulator: EmulatorHandle) -> None:
    # Given a request naming an assistant that does not exist
    request = {
        "kind": "run",
        "backend": "assistants",
        "assistant_id": "asst_missing",
        "messages": [{"role": "user", "content": "hi"}],
    }
    # When it runs
    record = harness.submit_and_run(request)
    # Then it fails at once, naming the assistant, with a single attempt at the run
    assert record.status == JobStatus.FAILED
    assert record.error is not None and "asst_missing" in record.error.message
    assert not record.error.retryable
    assert emulator.counters()["requests"]["POST /v1/threads/{thread_id}/runs"] == 1


def test_reject_fails_a_job_on_a_busy_thread(harness: Harness, ask: Ask, new_thread: NewThread) -> None:
    # Given a job running on a thread
    thread = new_thread()
    first = harness.jobs.submit(ask("first", **thread))
    harness.run_until_status(first.id, JobStatus.RUNNING)
    # When another is submitted there with strategy reject
    rejected = harness.submit_and_run(ask("second", strategy="reject", **thread))
    # Then it fails as thread_busy, and the first still completes
    assert rejected.status == JobStatus.FAILED and rejected.error is not None
    assert rejected.error.code == "thread_busy"
    assert harness.run(first.id)[0].status == JobStatus.COMPLETED


def test_interrupt_cancels_the_active_run_then_starts(
    harness: Harness, ask: Ask, new_thread: NewThread, emulator: EmulatorHandle
) -> None:
    # Given a long job running on a thread
    set_durations(emulator, 20)
    thread = new_thread()
    first = harness.jobs.submit(ask("first", **thread))
    harness.run_until_status(first.id, JobStatus.RUNNING)
    set_durations(emulator, 0.5)
    # When another is submitted there with strategy interrupt
    second = harness.submit_and_run(ask("second", strategy="interrupt", **thread))
    # Then the first is cancelled and the second completes
    assert second.status == JobStatus.COMPLETED, second.error
    assert harness.jobs.get(first.id).status == JobStatus.CANCELLED


@pytest.mark.parametrize("backend", ["assistants"])  # the API enforces one active run per thread only here
def test_a_run_started_outside_the_system_is_waited_out(
    harness: Harness, ask: Ask, api: openai.OpenAI, emulator: EmulatorHandle
) -> None:
    # Given a thread on which someone else started a two-second run
    emulator.update_profile(run_duration={"kind": "fixed", "value": 2})
    request = ask("ours")
    thread = beta(api).threads.create()
    beta(api).threads.runs.create(thread.id, assistant_id=request["assistant_id"])
    # When a job is submitted on it
    record = harness.submit_and_run({**request, "thread_id": thread.id})
    # Then it waits that run out and completes, having spent none of its retries
    assert record.status == JobStatus.COMPLETED, record.error
    assert record.retries == 0


def test_both_backends_give_the_same_record_but_for_backend_and_remote_ids(
    harness: Harness, api: openai.OpenAI
) -> None:
    # Given the same question on each backend
    assistant = beta(api).assistants.create(model="gpt-4o")
    question = [{"role": "user", "content": "Which river runs through Paris?"}]
    on_assistants = harness.jobs.submit(
        {"kind": "run", "backend": "assistants", "assistant_id": assistant.id, "messages": question}
    )
    on_responses = harness.jobs.submit(
        {"kind": "run", "backend": "responses", "model": "gpt-4o", "messages": question}
    )
    # When both run
    a, r = harness.run(on_assistants.id, on_responses.id)
    # Then the records are the same but for ids, times, the request and the remote ids
    assert a.status == r.status == JobStatus.COMPLETED
    varying = {
        "id",
        "request",
        "remote",
        "created_at",
        "started_at",
        "updated_at",
        "finished_at",
        "deadline_at",
    }
    assert a.model_dump(exclude=varying) == r.model_dump(exclude=varying)
    assert (a.request["backend"], r.request["backend"]) == ("assistants", "responses")


def test_the_same_idempotency_key_gives_one_job_and_dispatches_once(
    harness: Harness, ask: Ask, emulator: EmulatorHandle, backend: str
) -> None:
    # Given a request submitted twice with the same idempotency key
    first = harness.jobs.submit(ask("once", idempotency_key="order-7"))
    again = harness.jobs.submit(ask("once", idempotency_key="order-7"))
    # When the worker runs what was sent
    harness.run(first.id)
    # Then there is one job, started by one message, with one remote run
    assert (again.id, first.created, again.created) == (first.id, True, False)
    assert harness.worker.ran.count("aj.run.start") == 1
    assert [r.id for r in harness.jobs.list()] == [first.id]
    assert created_per_job(emulator, backend) == {first.id: 1}


def test_a_job_that_spends_its_retries_is_dead_lettered_and_can_be_retried(
    make_harness: Callable[..., Harness], ask: Ask, emulator: EmulatorHandle
) -> None:
    # Given a worker allowed two retries, and an API that answers every create 503
    harness = make_harness(AJ_MAX_RETRIES="2")
    emulator.set_faults(rate_503=1.0, methods=["POST"])
    before = posts(emulator)
    ref = harness.jobs.submit(ask("doomed"))
    # When the job runs
    [record] = harness.run(ref.id)
    # Then it tried exactly three times, then failed retryable and was dead-lettered
    assert posts(emulator) - before == 3
    assert record.status == JobStatus.FAILED and record.error is not None and record.error.retryable
    assert [r.id for r in harness.jobs.dead()] == [ref.id]
    # And once the API is back, retrying it runs a new job to completion and empties the dead letters
    emulator.clear_faults()
    retried = harness.jobs.retry_dead(ref.id)
    assert harness.run(retried.id)[0].status == JobStatus.COMPLETED
    assert harness.jobs.dead() == []
