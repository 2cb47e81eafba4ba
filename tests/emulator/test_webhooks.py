"""Webhooks: background responses' end events, Standard Webhooks signed, verified by the real openai SDK.

Each test runs a receiver (emulator.webhook_receiver) that unwraps every delivery with
`openai.OpenAI(...).webhooks.unwrap` and waits on what arrives; nothing here sleeps for a fixed time.
"""

from __future__ import annotations

import base64
import json
import socket
import time
import urllib.error
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import openai
import pytest

from emulator.profile import Distribution, WebhookRetry
from emulator.server import EmulatorHandle
from emulator.webhook_receiver import Received, WebhookReceiver
from emulator.webhooks import backoff

if TYPE_CHECKING:
    # Only a type: tests/conftest.py is a module named "conftest" too, so importing at run time could get it.
    from conftest import Contract

SECRET = "whsec_" + base64.b64encode(b"the webhook tests' own secret").decode()
RETRY = {"first_s": 0.05, "factor": 2.0, "max_attempts": 3}


@pytest.fixture
def receiver(emulator: EmulatorHandle) -> Iterator[WebhookReceiver]:
    """A receiver the emulator delivers to with short retries, and no other test's response left to end."""
    emulator.reset_state()
    with WebhookReceiver(SECRET) as receiver:
        emulator.set_webhooks(urls=[receiver.url], secret=SECRET, retry=RETRY)
        yield receiver
        emulator.set_webhooks(urls=[])
        emulator.reset_state()


def _wait_counters(
    emulator: EmulatorHandle, done: Callable[[dict[str, Any]], bool], timeout: float = 10.0
) -> dict[str, Any]:
    """The webhook counters once `done(counters)` holds (polled through the admin API)."""
    deadline = time.monotonic() + timeout
    while True:
        counters = emulator.webhook_counters()
        if done(counters):
            return counters
        assert time.monotonic() < deadline, f"webhook counters never got there: {counters}"
        time.sleep(0.01)


def _settled(emulator: EmulatorHandle) -> dict[str, Any]:
    """The webhook counters once no delivery is left pending."""
    return _wait_counters(emulator, lambda c: c["pending"] == 0)


def _check_schema(contract: Contract, seen: Received, title: str) -> None:
    schema = "#/components/schemas/Webhook" + "".join(p.capitalize() for p in title.split("."))
    errors = [e.message for e in contract.validator(schema).iter_errors(json.loads(seen.body))]
    assert not errors, errors


def test_a_completed_background_response_yields_one_verified_event_right_after_it_completes(
    client: openai.OpenAI, emulator: EmulatorHandle, receiver: WebhookReceiver, contract: Contract
) -> None:
    # Given a receiver configured for the emulator's webhooks
    # When a background response runs to its end
    response = client.responses.create(model="gpt-4o", input="hi", background=True)
    seen = receiver.next()
    # Then the receiver gets a verified response.completed naming it, soon after its completion
    assert seen.verified and seen.status == 200
    assert seen.event.type == "response.completed"
    assert seen.event.data.id == response.id
    assert seen.webhook_id == seen.event.id and seen.event.id.startswith("evt_")
    _check_schema(contract, seen, "response.completed")
    completed_at = emulator.response_detail(response.id)["completed_at_precise"]
    assert completed_at - 0.01 <= seen.at < completed_at + 2.0  # generous: CI machines are busy
    assert seen.event.created_at == int(completed_at)
    # And a receiver that looks the response up then finds it completed
    assert client.responses.retrieve(response.id).status == "completed"
    # And it is the only delivery
    counters = _settled(emulator)
    assert len(receiver.received) == 1
    assert counters == {
        "events": {"response.completed": 1},
        "deliveries": 1,
        "attempted": 1,
        "succeeded": 1,
        "failed": 0,
        "retried": 0,
        "gave_up": 0,
        "dropped": 0,
        "duplicated": 0,
        "reordered": 0,
        "bad_signature": 0,
        "pending": 0,
        "scheduled": 0,
    }


@pytest.mark.parametrize(
    ("share", "event_type"),
    [("p_response_failed", "response.failed"), ("p_response_incomplete", "response.incomplete")],
)
def test_a_response_that_fails_or_ends_incomplete_says_so(
    client: openai.OpenAI,
    emulator: EmulatorHandle,
    receiver: WebhookReceiver,
    contract: Contract,
    share: str,
    event_type: str,
) -> None:
    emulator.update_profile(**{share: 1.0})
    response = client.responses.create(model="gpt-4o", input="hi", background=True)
    seen = receiver.next()
    assert seen.verified and seen.event.type == event_type and seen.event.data.id == response.id
    _check_schema(contract, seen, event_type)


def test_a_cancelled_response_yields_response_cancelled_and_no_end_event(
    client: openai.OpenAI, emulator: EmulatorHandle, receiver: WebhookReceiver, contract: Contract
) -> None:
    # Given a background response that would run for a minute
    emulator.update_profile(response_duration=Distribution(kind="fixed", value=60).model_dump())
    response = client.responses.create(model="gpt-4o", input="hi", background=True)
    assert emulator.webhook_counters()["scheduled"] == 1
    # When it is cancelled
    client.responses.cancel(response.id)
    # Then response.cancelled arrives at once, and its end event is no longer scheduled
    seen = receiver.next()
    assert seen.verified and seen.event.type == "response.cancelled" and seen.event.data.id == response.id
    _check_schema(contract, seen, "response.cancelled")
    counters = _settled(emulator)
    assert counters["scheduled"] == 0
    assert counters["events"] == {"response.cancelled": 1}
    # And cancelling again changes nothing
    client.responses.cancel(response.id)
    assert _settled(emulator)["events"] == {"response.cancelled": 1}


def test_a_deleted_response_sends_no_event(
    client: openai.OpenAI, emulator: EmulatorHandle, receiver: WebhookReceiver
) -> None:
    emulator.update_profile(response_duration=Distribution(kind="fixed", value=60).model_dump())
    response = client.responses.create(model="gpt-4o", input="hi", background=True)
    client.responses.delete(response.id)
    assert emulator.webhook_counters()["scheduled"] == 0


def test_a_receiver_answering_500_twice_gets_retries_with_backoff_then_succeeds(
    client: openai.OpenAI, emulator: EmulatorHandle, receiver: WebhookReceiver
) -> None:
    # Given a receiver that answers 500 to the first two deliveries (retries after 0.05 s, then 0.1 s)
    receiver.answer(500, 500)
    # When a background response ends
    response = client.responses.create(model="gpt-4o", input="hi", background=True)
    first, second, third = receiver.next(), receiver.next(), receiver.next()
    # Then the same event came three times, each verified, and the third was accepted
    assert [s.status for s in (first, second, third)] == [500, 500, 200]
    assert all(s.verified and s.event.data.id == response.id for s in (first, second, third))
    assert first.webhook_id == second.webhook_id == third.webhook_id
    # And the waits between them grew as the backoff says
    assert second.at - first.at >= 0.045
    assert third.at - second.at >= 0.095
    counters = _settled(emulator)
    assert (counters["attempted"], counters["failed"], counters["retried"], counters["succeeded"]) == (
        3,
        2,
        2,
        1,
    )
    assert counters["gave_up"] == 0


def test_an_unreachable_receiver_is_retried_until_the_attempts_run_out(
    emulator: EmulatorHandle, receiver: WebhookReceiver
) -> None:
    # Given a URL where nothing listens, and three attempts
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{sock.getsockname()[1]}/webhooks"
    emulator.set_webhooks(urls=[closed], retry={"first_s": 0.01, "max_attempts": 3})
    # When an event is sent
    emulator.emit_webhooks(1)
    # Then it is tried three times and given up
    counters = _wait_counters(emulator, lambda c: c["gave_up"] == 1)
    assert (counters["attempted"], counters["failed"], counters["retried"], counters["succeeded"]) == (
        3,
        3,
        2,
        0,
    )


def test_bad_signature_deliveries_fail_verification_on_every_attempt(
    emulator: EmulatorHandle, receiver: WebhookReceiver
) -> None:
    # Given every delivery signed with a wrong key, and two attempts
    emulator.set_webhooks(retry={"first_s": 0.01, "max_attempts": 2}, faults={"rate_bad_signature": 1.0})
    # When an event is sent
    emulator.emit_webhooks(1)
    # Then the SDK rejects both attempts, and the receiver's 400s make the emulator give up
    first, second = receiver.next(), receiver.next()
    for seen in (first, second):
        assert isinstance(seen.error, openai.InvalidWebhookSignatureError)
        assert seen.status == 400
    assert first.webhook_id == second.webhook_id
    counters = _wait_counters(emulator, lambda c: c["gave_up"] == 1)
    assert (counters["bad_signature"], counters["failed"], counters["succeeded"]) == (1, 2, 0)


def test_the_duplicate_fault_delivers_the_same_webhook_id_twice(
    emulator: EmulatorHandle, receiver: WebhookReceiver
) -> None:
    emulator.set_webhook_faults(rate_duplicate=1.0)
    [event_id] = emulator.emit_webhooks(1)
    first, second = receiver.next(), receiver.next()
    assert first.webhook_id == second.webhook_id == event_id
    assert first.verified and second.verified and first.body == second.body
    counters = _settled(emulator)
    assert (counters["duplicated"], counters["deliveries"], counters["succeeded"]) == (1, 2, 2)


def test_the_drop_fault_never_delivers_and_polling_still_finds_the_end(
    client: openai.OpenAI, emulator: EmulatorHandle, receiver: WebhookReceiver
) -> None:
    emulator.set_webhook_faults(rate_drop=1.0)
    response = client.responses.create(model="gpt-4o", input="hi", background=True)
    counters = _wait_counters(emulator, lambda c: c["dropped"] == 1 and c["pending"] == 0)
    assert receiver.received == []
    assert (counters["deliveries"], counters["attempted"]) == (0, 0)
    assert client.responses.retrieve(response.id).status == "completed"


def test_the_reorder_fault_lets_a_later_event_overtake_a_held_one(
    emulator: EmulatorHandle, receiver: WebhookReceiver
) -> None:
    # Given one event held back by the reorder fault
    emulator.set_webhook_faults(rate_reorder=1.0, reorder_after=1, reorder_max_s=30)
    [held] = emulator.emit_webhooks(1, object_id="resp_first")
    # When a later event goes out with the fault off
    emulator.clear_webhook_faults()
    [later] = emulator.emit_webhooks(1, object_id="resp_second")
    # Then the later one arrives first, and the held one right after it was answered
    first, second = receiver.next(), receiver.next()
    assert (first.webhook_id, second.webhook_id) == (later, held)
    assert second.verified and second.event.data.id == "resp_first"
    assert _settled(emulator)["reordered"] == 1


def test_delay_postpones_every_delivery(emulator: EmulatorHandle, receiver: WebhookReceiver) -> None:
    emulator.set_webhook_faults(delay_s=0.3)
    sent = time.time()
    emulator.emit_webhooks(1)
    assert receiver.next().at - sent >= 0.3


def test_the_same_seed_picks_the_same_deliveries(emulator: EmulatorHandle, receiver: WebhookReceiver) -> None:
    picked = []
    for _ in range(2):
        emulator.set_webhook_faults(rate_drop=0.3, rate_duplicate=0.3, seed=11)
        emulator.reset_counters()
        emulator.emit_webhooks(40)
        counters = _settled(emulator)
        picked.append((counters["dropped"], counters["duplicated"]))
    assert picked[0] == picked[1]
    assert picked[0][0] > 0 and picked[0][1] > 0


def test_hundreds_of_events_all_arrive_verified_and_counted(
    emulator: EmulatorHandle, receiver: WebhookReceiver
) -> None:
    ids = set(emulator.emit_webhooks(500))
    seen = receiver.wait_count(500)
    assert {s.webhook_id for s in seen} == ids
    assert all(s.verified for s in seen)
    counters = _settled(emulator)
    assert (counters["deliveries"], counters["attempted"], counters["succeeded"]) == (500, 500, 500)


def test_urls_and_secret_come_from_the_profile_too(emulator: EmulatorHandle) -> None:
    other = "whsec_" + base64.b64encode(b"another secret").decode()
    with WebhookReceiver(other) as receiver:
        emulator.update_profile(webhook_urls=[receiver.url], webhook_secret=other)
        assert emulator.webhooks()["urls"] == [receiver.url]
        emulator.emit_webhooks(1)
        assert receiver.next().verified
        emulator.update_profile(webhook_urls=[])
        _settled(emulator)


def test_every_url_gets_every_event_as_its_own_delivery(
    emulator: EmulatorHandle, receiver: WebhookReceiver
) -> None:
    with WebhookReceiver(SECRET) as other:
        emulator.set_webhooks(urls=[receiver.url, other.url])
        other.answer(503)
        [event_id] = emulator.emit_webhooks(1)
        # The second URL's failure is retried on its own; the first URL's delivery is done at once
        assert receiver.next().webhook_id == event_id
        assert [other.next().status, other.next().status] == [503, 200]
        counters = _settled(emulator)
    assert (counters["deliveries"], counters["attempted"], counters["retried"]) == (2, 3, 1)
    assert len(receiver.received) == 1


@pytest.mark.parametrize(
    "body",
    [
        {"secret": "not-a-secret"},
        {"urls": ["ftp://x"]},
        {"faults": {"rate_drop": 2}},
        {"retry": {"factor": 0.5}},
        {"x": 1},
    ],
)
def test_bad_webhook_settings_are_refused(emulator: EmulatorHandle, body: dict[str, Any]) -> None:
    with pytest.raises(urllib.error.HTTPError) as refused:
        emulator._call("PUT", "/webhooks", body)
    refused.value.close()
    assert refused.value.code == 400


def test_backoff_grows_by_the_factor_up_to_the_cap() -> None:
    retry = WebhookRetry(first_s=0.2, factor=2.0, max_s=1.0)
    assert [backoff(n, retry) for n in (1, 2, 3, 4, 5)] == [0.2, 0.4, 0.8, 1.0, 1.0]
