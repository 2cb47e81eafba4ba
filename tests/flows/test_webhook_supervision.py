"""Webhook-first supervision, in process: the receiver (real HTTP, the SDK's own verifier) wakes jobs whose
responses ended; polling is only the safety net."""

from __future__ import annotations

import asyncio
import base64
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import httpx2
import orjson
import pytest
import redis
from aiohttp import web
from harness import Harness
from helpers import question, webhook_headers

from devkit.redis_server import free_port
from emulator.server import EmulatorHandle
from schemas.job import JobStatus
from worker.settings import Settings
from worker.store.wakeups import AsyncWakeups, Wakeups
from worker.webhooks import create_app

SECRET = "whsec_" + base64.b64encode(b"assistant-jobs-test-secret-32byte").decode()


def signed(
    body: bytes, secret: str = SECRET, *, delivery_id: str | None = None, at: float | None = None
) -> dict[str, str]:
    """Standard Webhooks headers for ``body``, signed with this module's secret unless told another."""
    return webhook_headers(body, secret, delivery_id=delivery_id, at=at)


def event(response_id: str, kind: str = "response.completed") -> bytes:
    return orjson.dumps(
        {
            "id": f"evt_{uuid.uuid4().hex}",
            "object": "event",
            "type": kind,
            "created_at": int(time.time()),
            "data": {"id": response_id},
        }
    )


@dataclass
class Receiver:
    """The receiver serving in a thread of its own, and a way to post to it."""

    url: str

    def post(self, body: bytes, headers: dict[str, str]) -> httpx2.Response:
        return httpx2.post(self.url, content=body, headers=headers, timeout=10)

    def deliver(
        self, response_id: str, kind: str = "response.completed", **signing: object
    ) -> httpx2.Response:
        body = event(response_id, kind)
        return self.post(body, signed(body, **signing))  # type: ignore[arg-type]


@pytest.fixture
def watched(make_harness: Callable[..., Harness]) -> Harness:
    """A harness whose responses are watched by webhooks (polls every 30 s as the safety net)."""
    return make_harness(AJ_WEBHOOKS="true", AJ_WEBHOOK_SECRET=SECRET, AJ_WEBHOOK_SAFETY_POLL="30")


@pytest.fixture
def receiver(watched: Harness) -> Iterator[Receiver]:
    settings: Settings = watched.settings.model_copy(update={"webhook_port": free_port()})
    loop = asyncio.new_event_loop()
    runner = web.AppRunner(create_app(settings))
    loop.run_until_complete(runner.setup())
    loop.run_until_complete(web.TCPSite(runner, "127.0.0.1", settings.webhook_port).start())
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    yield Receiver(f"http://127.0.0.1:{settings.webhook_port}{settings.webhook_path}")
    asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(10)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(10)
    loop.close()


def retrieves(emulator: EmulatorHandle) -> int:
    return int(emulator.counters()["requests"].get("GET /v1/responses/{response_id}", 0))


def test_a_good_delivery_wakes_the_job_which_learns_its_end_with_one_retrieve(
    watched: Harness, receiver: Receiver, emulator: EmulatorHandle
) -> None:
    # Given a watched job whose response has just ended, its next poll 30 s away
    ref = watched.jobs.submit(question())
    record = watched.run_until_created(ref.id)
    assert watched.store.schedule.next_due_in() == pytest.approx(30, abs=1)
    watched.clock.advance(2)  # the emulator's response is done by now
    # When OpenAI's webhook arrives
    answer = receiver.deliver(record.remote["response_id"])
    # Then it is acknowledged, and the job finishes at once, from one retrieve, learnt from the webhook
    assert (answer.status_code, answer.json()) == (200, {"received": "woken"})
    [done] = watched.run(ref.id, max_steps=5)
    assert done.status == JobStatus.COMPLETED and done.end_learnt_by == "webhook"
    assert retrieves(emulator) == 1
    assert watched.store.wakeups.counts() == {"woken": 1, "end_by_webhook": 1}


@pytest.mark.parametrize(
    "tamper",
    ["wrong secret", "stale timestamp", "no signature", "not an event"],
)
def test_a_bad_stale_or_unsigned_delivery_is_refused_and_changes_nothing(
    watched: Harness, receiver: Receiver, tamper: str
) -> None:
    ref = watched.jobs.submit(question())
    record = watched.run_until_created(ref.id)
    due_before = watched.store.schedule.next_due_in()
    body = event(record.remote["response_id"])
    headers = signed(body)
    if tamper == "wrong secret":
        headers = signed(body, "whsec_" + base64.b64encode(b"someone-else-entirely-secret-key").decode())
    elif tamper == "stale timestamp":
        headers = signed(body, at=time.time() - 3600)
    elif tamper == "no signature":
        headers.pop("webhook-signature")
    else:
        body = b"[1, 2, 3]"
        headers = signed(body)
    answer = receiver.post(body, headers)
    assert answer.status_code == 400
    due_after = watched.store.schedule.next_due_in()
    assert due_before is not None and due_after is not None and due_after == pytest.approx(due_before, abs=1)
    assert watched.store.wakeups.counts() == {"rejected": 1}


def test_a_duplicate_delivery_has_one_effect(watched: Harness, receiver: Receiver) -> None:
    ref = watched.jobs.submit(question())
    record = watched.run_until_created(ref.id)
    body = event(record.remote["response_id"])
    headers = signed(body, delivery_id="wh_same")
    assert receiver.post(body, headers).json() == {"received": "woken"}
    assert receiver.post(body, headers).json() == {"received": "duplicate"}


def test_an_event_for_a_response_no_job_knows_yet_is_acknowledged_and_wakes_it_once_recorded(
    redis_client: redis.Redis, redis_url: str
) -> None:
    # Given an event that overtook its create's answer
    async def deliver() -> str:
        client = redis.asyncio.Redis.from_url(redis_url)
        woken = await AsyncWakeups(client, dedupe_s=60, early_s=60).wake("wh_1", "resp_early")
        await client.aclose()
        return woken.value

    assert asyncio.run(deliver()) == "unknown"
    # When the job records that response id, it learns the event came, so it polls at once
    assert Wakeups(redis_client).track("resp_early", "job_1", keep_s=60) is True
    assert Wakeups(redis_client).track("resp_early", "job_1", keep_s=60) is False


def test_events_out_of_order_or_twice_end_the_job_once(
    watched: Harness, receiver: Receiver, emulator: EmulatorHandle
) -> None:
    ref = watched.jobs.submit(question())
    record = watched.run_until_created(ref.id)
    watched.clock.advance(2)
    response_id = record.remote["response_id"]
    receiver.deliver(response_id, "response.completed")
    [done] = watched.run(ref.id, max_steps=5)
    # A late, different event for the same response after the end changes nothing
    assert receiver.deliver(response_id, "response.cancelled").json() == {"received": "gone"}
    watched.run(ref.id)
    ends = [e.type for e in watched.jobs.events(count=1000) if e.job_id == ref.id and e.status.ended]
    assert done.status == JobStatus.COMPLETED and ends == ["job.completed"]


def test_with_every_webhook_lost_jobs_still_complete_by_the_safety_poll(watched: Harness) -> None:
    # Given watched jobs whose webhooks never come
    refs = watched.jobs.submit_many([question() for _ in range(3)])
    # When time passes, the safety poll finds them ended
    records = watched.run(*[r.id for r in refs])
    # Then they complete, learnt by polling, and the miss is announced and counted
    assert [(r.status, r.end_learnt_by) for r in records] == [(JobStatus.COMPLETED, "poll")] * 3
    missed = [e.job_id for e in watched.jobs.events(count=1000) if e.type == "job.webhook_missed"]
    assert sorted(missed) == sorted(r.id for r in refs)
    assert watched.store.wakeups.counts() == {"end_by_poll": 3}
