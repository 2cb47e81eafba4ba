"""Webhook delivery: background responses' end events, signed as Standard Webhooks, sent from the server loop.

A background response's end is known when it is created (the profile draws its duration), so creation
schedules one loop timer for it; a cancel replaces that timer with an immediate `response.cancelled`. Each
event goes to every URL of the profile as its own delivery: a task that signs each attempt afresh, retries
with backoff while the receiver answers non-2xx or cannot be reached, and shares one pool of kept-alive
connections with every other delivery, so thousands of deliveries a second cost neither a thread nor a
connection each.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import hashlib
import heapq
import hmac
import itertools
import random
import time
from dataclasses import dataclass

import orjson

from emulator.counters import Counters
from emulator.faults import WebhookFaults
from emulator.profile import WebhookRetry
from emulator.response_model import ResponseRecord
from emulator.state import Store, new_id
from emulator.webhook_http import DeliveryError, HttpPool

CONNECTION_LIMIT = 256
"""Connections the delivery pool keeps open at most, all receivers together; deliveries beyond it queue."""

USER_AGENT = "assistant-jobs-emulator-webhooks/1"
"""The user agent deliveries carry."""


@functools.lru_cache(maxsize=16)
def secret_key(secret: str) -> bytes:
    """The HMAC key of a `whsec_...` secret: the base64-decoded part after the prefix."""
    return base64.b64decode(secret.removeprefix("whsec_"))


def sign(key: bytes, webhook_id: str, timestamp: str, body: bytes) -> str:
    """The `webhook-signature` value: `v1,` and the base64 HMAC-SHA256 of `{id}.{timestamp}.{body}`."""
    signed = b"%s.%s.%s" % (webhook_id.encode(), timestamp.encode(), body)
    return "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()


def backoff(attempt: int, retry: WebhookRetry) -> float:
    """Seconds to wait after failed attempt number `attempt` (1-based) before the next one."""
    return float(min(retry.max_s, retry.first_s * retry.factor ** (attempt - 1)))


def event_body(event_id: str, event_type: str, object_id: str, at: float) -> bytes:
    """The event as the API sends it: no result inside, only the object's id."""
    return orjson.dumps(
        {
            "id": event_id,
            "object": "event",
            "type": event_type,
            "created_at": int(at),
            "data": {"id": object_id},
        }
    )


@dataclass(slots=True)
class Delivery:
    """One event to one URL, with the faults drawn for it."""

    url: str
    event_id: str
    body: bytes
    delay_s: float = 0.0
    copies: int = 1
    hold_for: int = 0  # later first attempts to wait for (0: not held)
    hold_max_s: float = 0.0
    bad_signature: bool = False


class WebhookDispatcher:
    """Schedules end events for background responses and delivers them; lives on the server's event loop."""

    def __init__(self, store: Store, counters: Counters) -> None:
        self.store = store
        self.counters = counters
        self.set_faults(WebhookFaults())
        self._pool = HttpPool(CONNECTION_LIMIT)
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        # Held (reordered) deliveries wait for this count of ended first attempts to reach their mark; a heap
        # of (mark, sequence, future), so that releasing costs little however many are held.
        self._first_attempts = 0
        self._held: list[tuple[int, int, asyncio.Future[None]]] = []
        self._held_sequence = itertools.count()

    def set_faults(self, faults: WebhookFaults) -> None:
        """Switch to `faults`, restarting their RNG from their seed."""
        self.faults = faults
        self.rng = random.Random(faults.seed)

    @property
    def pending(self) -> int:
        """Deliveries not yet ended: waiting, held, in flight or between retries."""
        return len(self._tasks)

    @property
    def scheduled(self) -> int:
        """End events scheduled for background responses still going."""
        return len(self._timers)

    def response_created(self, record: ResponseRecord) -> None:
        """Schedule the end event of a background response for its end time."""
        loop = asyncio.get_running_loop()
        delay = max(0.0, record.done_at - self.store.now())
        self._timers[record.id] = loop.call_later(delay, self._response_ended, record.id)

    def response_cancelled(self, record: ResponseRecord) -> None:
        """The response was cancelled before its end: `response.cancelled` now instead of its end event."""
        self.response_deleted(record.id)
        self.emit("response.cancelled", record.id, record.cancelled_at or self.store.now())

    def response_deleted(self, response_id: str) -> None:
        """Forget the response's end event: a deleted response ends without one."""
        timer = self._timers.pop(response_id, None)
        if timer is not None:
            timer.cancel()

    def _response_ended(self, response_id: str) -> None:
        self._timers.pop(response_id, None)
        record = self.store.responses.get(response_id)
        if record is not None and record.cancelled_at is None:
            self.emit(f"response.{record.outcome}", record.id, record.done_at)

    def emit(self, event_type: str, object_id: str, at: float) -> str | None:
        """Create an event and start its deliveries to the profile's URLs; its id, or None with no URL."""
        urls = self.store.profile.webhook_urls
        if not urls:
            return None
        event_id = new_id("evt_")
        body = event_body(event_id, event_type, object_id, at)
        self.counters.webhook_events[event_type] += 1
        for url in urls:
            delivery = self._draw_faults(Delivery(url, event_id, body))
            if delivery is not None:
                task = asyncio.create_task(self._deliver(delivery))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
        return event_id

    def _draw_faults(self, delivery: Delivery) -> Delivery | None:
        """Decide this delivery's faults; None when it is dropped. Always four draws, so sequences align."""
        faults, stats = self.faults, self.counters.webhooks
        drop, bad, duplicate, reorder = (self.rng.random() for _ in range(4))
        if drop < faults.rate_drop:
            stats["dropped"] += 1
            return None
        delivery.delay_s = faults.delay_s
        delivery.bad_signature = bad < faults.rate_bad_signature
        delivery.copies = 2 if duplicate < faults.rate_duplicate else 1
        if reorder < faults.rate_reorder:
            delivery.hold_for, delivery.hold_max_s = faults.reorder_after, faults.reorder_max_s
            stats["reordered"] += 1
        stats["deliveries"] += delivery.copies
        stats["bad_signature"] += delivery.bad_signature
        stats["duplicated"] += delivery.copies - 1
        return delivery

    async def _deliver(self, delivery: Delivery) -> None:
        if delivery.delay_s:
            await asyncio.sleep(delivery.delay_s)
        if delivery.hold_for:
            await self._hold(delivery.hold_for, delivery.hold_max_s)
        for _ in range(delivery.copies):
            await self._until_accepted(delivery)

    async def _hold(self, later: int, max_s: float) -> None:
        """Wait until `later` more first attempts of other deliveries have ended, or `max_s`."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._held, (self._first_attempts + later, next(self._held_sequence), future))
        # A hold that timed out leaves its entry in the heap; releasing it later does no harm.
        await asyncio.wait({future}, timeout=max_s)

    def _first_attempt_ended(self) -> None:
        self._first_attempts += 1
        while self._held and self._held[0][0] <= self._first_attempts:
            future = heapq.heappop(self._held)[2]
            if not future.done():
                future.set_result(None)

    async def _until_accepted(self, delivery: Delivery) -> None:
        retry = self.store.profile.webhook_retry
        stats = self.counters.webhooks
        for attempt in range(1, retry.max_attempts + 1):
            if attempt > 1:
                stats["retried"] += 1
            accepted = await self._attempt(delivery, retry.timeout_s)
            if attempt == 1:
                self._first_attempt_ended()
            if accepted:
                return
            if attempt < retry.max_attempts:
                await asyncio.sleep(backoff(attempt, retry))
        stats["gave_up"] += 1

    async def _attempt(self, delivery: Delivery, timeout_s: float) -> bool:
        """One signed POST; whether the receiver answered 2xx within `timeout_s`."""
        stats = self.counters.webhooks
        stats["attempted"] += 1
        try:
            status = await self._pool.post(delivery.url, self._headers(delivery), delivery.body, timeout_s)
            accepted = 200 <= status < 300
        except (DeliveryError, TimeoutError):
            accepted = False
        stats["succeeded" if accepted else "failed"] += 1
        return accepted

    def _headers(self, delivery: Delivery) -> bytes:
        key = secret_key(self.store.profile.webhook_secret)
        if delivery.bad_signature:
            key = hashlib.sha256(b"not the secret" + key).digest()
        timestamp = str(int(time.time()))
        signature = sign(key, delivery.event_id, timestamp, delivery.body)
        return (
            f"content-type: application/json\r\nuser-agent: {USER_AGENT}\r\n"
            f"webhook-id: {delivery.event_id}\r\nwebhook-timestamp: {timestamp}\r\n"
            f"webhook-signature: {signature}\r\n"
        ).encode()

    def abandon(self) -> None:
        """Cancel every scheduled end event and every delivery not yet ended (the state was wiped)."""
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
        for task in list(self._tasks):
            task.cancel()

    async def close(self) -> None:
        """Abandon everything and close the connection pool (the server is stopping)."""
        tasks = list(self._tasks)
        self.abandon()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._pool.close()
