"""Rate-limit headers on every API answer, and the 429 fault's Retry-After."""

from __future__ import annotations

import re
from collections.abc import Mapping

import openai
import pytest

from emulator.ratelimits import RateLimits, duration
from emulator.server import EmulatorHandle

_DURATION = re.compile(r"^(\d+m)?(\d+(\.\d+)?s|\d+ms)$")
_NAMES = [
    f"x-ratelimit-{kind}-{what}"
    for what in ("requests", "tokens")
    for kind in ("limit", "remaining", "reset")
]


def _limits(headers: Mapping[str, str]) -> dict[str, str]:
    return {name: headers[name] for name in _NAMES}


def test_every_api_answer_carries_the_six_rate_limit_headers(
    client: openai.OpenAI, emulator: EmulatorHandle
) -> None:
    # Given the default budgets of 10,000 requests and 30,000,000 tokens a minute
    # When the client creates a response, then another, then asks for one that does not exist
    first = client.responses.with_raw_response.create(model="gpt-4o", input="hello " * 50)
    second = client.responses.with_raw_response.create(model="gpt-4o", input="hi")
    with pytest.raises(openai.NotFoundError) as missing:
        client.responses.retrieve("resp_missing")
    # Then every answer, errors included, carries all six, and the budgets go down as they are spent
    one, two, three = (_limits(h) for h in (first.headers, second.headers, missing.value.response.headers))
    for limits in (one, two, three):
        assert limits["x-ratelimit-limit-requests"] == "10000"
        assert limits["x-ratelimit-limit-tokens"] == "30000000"
        assert _DURATION.match(limits["x-ratelimit-reset-requests"])
        assert _DURATION.match(limits["x-ratelimit-reset-tokens"])
    assert int(one["x-ratelimit-remaining-requests"]) == 9999
    assert int(two["x-ratelimit-remaining-requests"]) <= 9999
    assert int(one["x-ratelimit-remaining-tokens"]) < 30_000_000 - 50


def test_the_run_retrieve_fast_path_carries_them_too(client: openai.OpenAI, emulator: EmulatorHandle) -> None:
    assistant = client.beta.assistants.create(model="gpt-4o")
    thread = client.beta.threads.create()
    run = client.beta.threads.runs.create(thread_id=thread.id, assistant_id=assistant.id)
    raw = client.beta.threads.runs.with_raw_response.retrieve(run.id, thread_id=thread.id)
    assert all(raw.headers.get(name) for name in _NAMES)
    assert raw.headers["openai-poll-after-ms"] == "50"


def test_a_429_says_when_to_come_back(emulator: EmulatorHandle) -> None:
    # Given every request answered 429 with a 2.5 s Retry-After
    emulator.set_faults(rate_429=1.0, retry_after_s=2.5)
    client = openai.OpenAI(base_url=emulator.base_url, api_key=emulator.api_key, max_retries=0)
    # When the client calls
    with pytest.raises(openai.RateLimitError) as caught:
        client.responses.create(model="gpt-4o", input="hi")
    # Then the answer says when to retry, and that no request is left until then
    headers = caught.value.response.headers
    assert headers["retry-after"] == "3"
    assert headers["retry-after-ms"] == "2500"
    assert headers["x-ratelimit-remaining-requests"] == "0"
    assert headers["x-ratelimit-reset-requests"] == "2.5s"


def test_the_budget_refills_over_the_minute() -> None:
    # Given a budget of 60 requests a minute, spent by 30 requests at once
    limits = RateLimits()
    for _ in range(30):
        headers = dict(limits.charge(1000.0, 0, 60, 1000))
    assert headers[b"x-ratelimit-remaining-requests"] == b"30"
    assert headers[b"x-ratelimit-reset-requests"] == b"30s"
    # When ten seconds pass, then ten requests are back (less the one spent now)
    later = dict(limits.charge(1010.0, 0, 60, 1000))
    assert later[b"x-ratelimit-remaining-requests"] == b"39"
    # And it never goes below zero
    for _ in range(100):
        later = dict(limits.charge(1010.0, 0, 60, 1000))
    assert later[b"x-ratelimit-remaining-requests"] == b"0"
    assert later[b"x-ratelimit-reset-requests"] == b"1m0s"


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "0s"),
        (0.02, "20ms"),
        (0.0001, "1ms"),
        (1, "1s"),
        (8.64, "8.64s"),
        (360, "6m0s"),
        (90.5, "1m30.5s"),
    ],
)
def test_durations_are_written_as_the_api_writes_them(seconds: float, text: str) -> None:
    assert duration(seconds) == text
