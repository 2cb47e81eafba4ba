"""Starts on the lean path: creates sent on an aiohttp session (`worker.async_api`) answer errors with the
SDK's own exceptions, so a job ends the way it did when the SDK made the call; and a start message of
many jobs creates exactly one remote run or response for each."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from typing import Any

import openai
import pytest
import redis
from harness import Harness
from helpers import Ask, created_per_job, soft_limit_after

from emulator.server import EmulatorHandle
from schemas.job import JobStatus
from worker import constants as c
from worker.async_api import ApiLoop, AsyncApi
from worker.metrics import ApiCounts
from worker.rate_gate import RateGate
from worker.settings import Settings
from worker.store.counters import ApiCounters
from worker.store.gates import Gates

CREATES = "/v1/responses"
"""The path every background response is created on."""


@pytest.fixture
def lean(settings: Settings, redis_client: redis.Redis, api: openai.OpenAI) -> Iterator[ApiLoop]:
    """The lean API path on the test's emulator and Redis, behind a rate gate of its own."""
    loop = ApiLoop(settings, ApiCounts(ApiCounters(redis_client)), RateGate(Gates(redis_client)), api)
    yield loop
    loop.close()


def _sdk_error(api: openai.OpenAI, body: dict[str, Any]) -> openai.APIStatusError:
    with pytest.raises(openai.APIStatusError) as raised:
        api.responses.create(**body)
    return raised.value


def _lean_error(lean: ApiLoop, body: dict[str, Any]) -> openai.APIStatusError:
    with pytest.raises(openai.APIStatusError) as raised:
        lean.run(lambda http: http.post("/responses", body))
    return raised.value


@pytest.mark.parametrize(
    ("faults", "fields"),
    [
        ({}, {"stream": True}),  # 400: the emulator does not stream
        ({}, {"previous_response_id": "resp_missing"}),  # 404
        ({"rate_429": 1.0, "retry_after_s": 0.001}, {}),
        ({"rate_500": 1.0}, {}),
        ({"rate_503": 1.0}, {}),
    ],
    ids=["400", "404", "429", "500", "503"],
)
def test_an_error_answer_to_a_lean_create_raises_what_the_sdk_raises(
    emulator: EmulatorHandle,
    api: openai.OpenAI,
    lean: ApiLoop,
    faults: dict[str, Any],
    fields: dict[str, Any],
) -> None:
    # Given an emulator that refuses the create (a bad request, an unknown id, or a fault on every POST)
    emulator.set_faults(**faults, methods=["POST"])
    body = {"model": "gpt-4o", "input": "hello", "background": True, **fields}
    # When the SDK sends it, and the lean path sends it
    sdk, ours = _sdk_error(api, body), _lean_error(lean, body)
    # Then both raise the same exception class with the same status, message and body
    assert type(ours) is type(sdk)
    assert (ours.status_code, ours.message, ours.body) == (sdk.status_code, sdk.message, sdk.body)
    assert ours.response.headers.get("retry-after") == sdk.response.headers.get("retry-after")


def test_a_lean_create_to_nowhere_raises_a_connection_error(settings: Settings, lean: ApiLoop) -> None:
    # Given an API base nothing listens on
    lean.settings = settings.model_copy(update={"openai_base_url": "http://127.0.0.1:9/v1"})
    # When a create is sent there, Then the SDK's connection error says so
    with pytest.raises(openai.APIConnectionError):
        lean.run(lambda http: http.post("/responses", {"model": "gpt-4o", "input": "hello"}))


@pytest.mark.parametrize("backend", ["responses"])
def test_a_refused_create_fails_the_job_with_the_api_s_code(
    harness: Harness, ask: Ask, emulator: EmulatorHandle
) -> None:
    # Given a job whose create the API refuses for good (its previous response does not exist)
    ref = harness.jobs.submit(ask("continue", previous_response_id="resp_missing"))
    # When it runs
    record = harness.run(ref.id)[0]
    # Then it fails at once with the API's code and message, after one create
    assert record.status == JobStatus.FAILED
    assert record.error is not None and record.error.code == "not_found"
    assert "resp_missing" in record.error.message
    assert emulator.counters()["requests"].get("POST /v1/responses") == 1


@pytest.mark.parametrize("backend", ["responses"])
def test_a_429_on_a_create_closes_the_endpoint_for_every_other_process_at_once(
    harness: Harness, ask: Ask, emulator: EmulatorHandle, redis_client: redis.Redis
) -> None:
    # Given the API answering every create with a 429 that asks for 30 s, and another process's view of
    # the gates, already watching
    emulator.set_faults(rate_429=1.0, retry_after_s=30, methods=["POST"], paths=[CREATES])
    other = RateGate(Gates(redis.Redis(connection_pool=redis_client.connection_pool)))
    assert other.watch.until(f"POST {CREATES}") == 0.0
    # When a job's start meets the 429
    ref = harness.jobs.submit(ask("hello"))
    harness.worker.drain()
    # Then the other process sees the endpoint closed for about 30 s, with nothing to expire first
    closed_for = other.watch.until(f"POST {CREATES}") - time.time()
    assert 25 < closed_for <= 30
    with pytest.raises(openai.OpenAIError, match="Retry-After"):
        other.check_route(f"POST {CREATES}")
    # And the job waits it out without spending a retry, then completes with one response
    record = harness.jobs.get(ref.id)
    assert record.status == JobStatus.RUNNING and record.retries == 0
    emulator.clear_faults()
    assert harness.run(ref.id)[0].status == JobStatus.COMPLETED
    assert created_per_job(emulator, "responses") == {ref.id: 1}
    other.watch.close()


def test_a_5xx_on_a_create_is_retried_and_the_job_gets_one_remote_run(
    harness: Harness, ask: Ask, emulator: EmulatorHandle, backend: str
) -> None:
    # Given an API that answers every POST with a 500
    emulator.set_faults(rate_500=1.0, methods=["POST"])
    ref = harness.jobs.submit(ask("hello"))
    # When the start meets it
    harness.worker.drain()
    # Then the job is still running, one retry spent, its start deferred
    record = harness.jobs.get(ref.id)
    assert (record.status, record.retries) == (JobStatus.RUNNING, 1)
    # And once the API recovers the job completes, with exactly one remote run
    emulator.clear_faults()
    assert harness.run(ref.id)[0].status == JobStatus.COMPLETED
    assert created_per_job(emulator, backend) == {ref.id: 1}


def test_many_jobs_in_each_start_message_get_exactly_one_remote_run_each(
    harness: Harness, ask: Ask, emulator: EmulatorHandle, backend: str
) -> None:
    # Given 250 jobs submitted at once
    refs = harness.jobs.submit_many([ask(f"question {i}") for i in range(250)])
    # When they run
    records = harness.run(*[r.id for r in refs])
    # Then they came in a few start messages of many jobs each, and every job completed with one remote run
    assert harness.worker.ran.count("aj.run.start") == math.ceil(250 / c.SUBMIT_CHUNK)
    assert {r.status for r in records} == {JobStatus.COMPLETED}
    assert created_per_job(emulator, backend) == {r.id: 1 for r in refs}


@pytest.mark.parametrize("backend", ["responses"])  # the Responses API cannot look a response up after
def test_a_start_cut_off_by_its_soft_time_limit_mid_create_records_what_was_made_and_creates_no_more(
    make_harness: Callable[..., Harness], ask: Ask, emulator: EmulatorHandle, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given time limits far enough apart that the hold's grace (half the gap) outlasts a loaded host
    harness = make_harness(AJ_TASK_SOFT_TIME_LIMIT="6", AJ_TASK_TIME_LIMIT="60", AJ_VISIBILITY_TIMEOUT="70")
    # and a start whose soft time limit strikes once the server has made the first of its responses
    with soft_limit_after(monkeypatch, AsyncApi, "post", first="/responses") as interrupted:
        refs = harness.jobs.submit_many([ask(f"question {i}") for i in range(3)])
        # When it is interrupted, retried and run to the end
        records = harness.run(*[r.id for r in refs])
    # Then it was interrupted mid-create, and still every job completed with the one response made for it
    assert interrupted
    assert [r.status for r in records] == [JobStatus.COMPLETED] * 3
    assert created_per_job(emulator, "responses") == {r.id: 1 for r in refs}
