"""Fault injection and counters, switched at run time through the admin API."""

from __future__ import annotations

import contextlib
import random
import time

import openai
import pytest

from emulator.admin_client import EmulatorAdmin
from emulator.faults import FaultInjector, Faults
from emulator.server import EmulatorHandle


def _seed_without_three_429s_in_a_row(rate: float, draws: int = 120) -> int:
    """A fault seed whose draws never give one request three 429s in a row.

    The SDK's default is two retries, so three 429s in a row fail a call whatever the client does; a fixed
    seed keeps the test about the SDK's retry behaviour rather than about luck.
    """
    for seed in range(1000):
        rng = random.Random(seed)
        rolls = [rng.random() < rate for _ in range(draws)]
        if not any(all(rolls[i : i + 3]) for i in range(draws - 2)) and sum(rolls) > draws * 0.25:
            return seed
    raise AssertionError("no seed found")


def test_with_30_percent_429s_the_sdk_still_completes_a_run(
    client: openai.OpenAI, emulator: EmulatorHandle
) -> None:
    # Given 30% of API requests answered 429 with a short Retry-After
    emulator.set_faults(rate_429=0.3, retry_after_s=0.05, seed=_seed_without_three_429s_in_a_row(0.3))
    # When the SDK, with its default retries, runs an assistant to completion
    assistant = client.beta.assistants.create(model="gpt-4o")
    thread = client.beta.threads.create(messages=[{"role": "user", "content": "hi"}])
    run = client.beta.threads.runs.create_and_poll(
        thread_id=thread.id, assistant_id=assistant.id, metadata={"aj_job_id": "job-429"}
    )
    # Then it completes, and the counters show the 429s, one run for the job, and no early retries
    assert run.status == "completed"
    counters = emulator.counters()
    assert counters["statuses"]["429"] > 0
    assert counters["faults"]["429"] == counters["statuses"]["429"]
    assert counters["runs_per_job"] == {"job-429": 1}
    assert counters["early_retries"] == 0


def test_early_retries_are_counted(emulator: EmulatorHandle) -> None:
    # Given every run-create answered 429 with a long Retry-After, and a client that ignores it
    emulator.set_faults(
        rate_429=1.0, retry_after_s=30, paths=["/v1/threads/{thread_id}/runs"], methods=["POST"]
    )
    client = openai.OpenAI(base_url=emulator.base_url, api_key=emulator.api_key, max_retries=0)
    for _ in range(3):
        with pytest.raises(openai.RateLimitError):
            client.beta.threads.runs.create(thread_id="thread_x", assistant_id="asst_x")
    # Then the two retries that came too soon are counted
    counters = emulator.counters()
    assert counters["early_retries"] == 2
    assert counters["route_statuses"]["POST /v1/threads/{thread_id}/runs"] == {"429": 3}


def test_5xx_and_dropped_connections_are_retried_by_the_sdk(
    client: openai.OpenAI, emulator: EmulatorHandle
) -> None:
    emulator.set_faults(rate_500=0.15, rate_503=0.15, seed=_seed_without_three_429s_in_a_row(0.3))
    for _ in range(5):
        client.beta.assistants.create(model="gpt-4o")
    emulator.set_faults(rate_drop=1.0, paths=["/v1/assistants"])
    with pytest.raises(openai.APIConnectionError):
        client.with_options(max_retries=1).beta.assistants.list()
    counters = emulator.counters()
    assert counters["faults"]["drop"] == 2
    assert counters["statuses"].get("500", 0) + counters["statuses"].get("503", 0) > 0


def test_a_stall_outlasts_the_client_timeout_and_latency_is_added(emulator: EmulatorHandle) -> None:
    emulator.set_faults(rate_stall=1.0, stall_s=2.0, paths=["/v1/assistants"])
    client = openai.OpenAI(base_url=emulator.base_url, api_key=emulator.api_key, max_retries=0, timeout=0.3)
    with pytest.raises(openai.APITimeoutError):
        client.beta.assistants.list()
    emulator.set_faults(latency_ms=200)
    started = time.monotonic()
    client.with_options(timeout=5).beta.assistants.list()
    assert time.monotonic() - started >= 0.2
    # The admin API itself is never faulted
    assert emulator.health()


def test_a_drop_after_the_request_took_effect_leaves_the_response_behind(emulator: EmulatorHandle) -> None:
    # Given every response create answered by a dropped connection after the response was created
    emulator.set_faults(rate_drop_after=1.0, paths=["/v1/responses"], methods=["POST"])
    client = openai.OpenAI(base_url=emulator.base_url, api_key=emulator.api_key, max_retries=0)
    # When a client creates a background response
    with pytest.raises(openai.APIConnectionError):
        client.responses.create(
            model="gpt-4o", input="hi", background=True, metadata={"aj_job_id": "job-drop-after"}
        )
    # Then the client heard nothing, yet the response exists and was counted as served
    counters = emulator.counters()
    assert counters["responses_per_job"] == {"job-drop-after": 1}
    assert counters["faults"] == {"drop_after": 1}
    assert counters["route_statuses"]["POST /v1/responses"] == {"200": 1}
    [created] = [r for r in emulator.responses() if r["metadata"] == {"aj_job_id": "job-drop-after"}]
    emulator.clear_faults()
    assert client.responses.retrieve(created["id"]).background is True


def test_the_sdk_retrying_a_create_whose_answer_was_lost_creates_it_again(emulator: EmulatorHandle) -> None:
    # Given lost answers on response creates, and the SDK's default two retries
    emulator.set_faults(rate_drop_after=1.0, paths=["/v1/responses"], methods=["POST"])
    client = openai.OpenAI(base_url=emulator.base_url, api_key=emulator.api_key, timeout=5)
    # When the create fails after its retries
    with pytest.raises(openai.APIConnectionError):
        client.responses.create(model="gpt-4o", input="hi", background=True, metadata={"aj_job_id": "job-x3"})
    # Then three responses exist for one job: a create is not idempotent
    assert emulator.counters()["responses_per_job"] == {"job-x3": 3}


def test_drop_after_keeps_older_faults_on_the_same_requests_under_a_seed() -> None:
    # Given the same seed and rates, with and without a drop_after share
    before, after = FaultInjector(), FaultInjector()
    before.set(Faults(rate_429=0.3, rate_drop=0.2, seed=5))
    after.set(Faults(rate_429=0.3, rate_drop=0.2, rate_drop_after=0.2, seed=5))
    # When both decide for the same requests
    old = [before.decide("GET", "/v1/x", "/v1/x") for _ in range(200)]
    new = [after.decide("GET", "/v1/x", "/v1/x") for _ in range(200)]
    # Then the older faults hit the same requests; drop_after only takes some of the unfaulted ones
    assert [f if f != "drop_after" else None for f in new] == old
    assert "drop_after" in new


def test_a_traced_route_keeps_when_each_request_arrived_and_each_429_asked_to_wait(
    client: openai.OpenAI, emulator: EmulatorHandle
) -> None:
    # Given the response creates traced, and every other one answered 429 for 2 s
    admin = EmulatorAdmin(emulator.base_url)
    admin.trace(["POST /v1/responses"])
    emulator.set_faults(rate_429=0.5, retry_after_s=2.0, seed=1, paths=["/v1/responses"])
    # When creates are sent (and a response is retrieved twice, which is not traced)
    before = time.time()
    created = []
    for _ in range(6):
        with contextlib.suppress(openai.RateLimitError):
            created.append(client.with_options(max_retries=0).responses.create(model="gpt-4o", input="hi"))
    emulator.clear_faults()
    response = client.responses.create(model="gpt-4o", input="hi", background=True)
    client.responses.retrieve(response.id)
    client.responses.retrieve(response.id)
    # Then the timeline has every create's arrival and every 429 with its wait, all on the traced route
    timeline = admin.timeline()
    assert [route for _, route in timeline["arrivals"]] == ["POST /v1/responses"] * 7
    refusals = timeline["refusals"]
    assert len(refusals) == 6 - len(created) > 0
    assert all(before <= at and until == pytest.approx(at + 2.0) for at, _, until in refusals)
    # And the retrieves are counted per response
    assert admin.counters()["retrieves_per_object"] == {response.id: 2}
