"""A webhook receiver for tests and measurements: it verifies each delivery with the openai SDK, records it.

It serves aiohttp.web on 127.0.0.1 in a background thread with its own event loop. Callers wait on what it
received (`next`, `wait_for`), never on sleeps. A delivery that verifies is answered 200, or the next of the
statuses queued with `answer`; one that does not verify is answered 400.
"""

from __future__ import annotations

import asyncio
import queue
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import openai
from aiohttp import web

from emulator.profile import DEFAULT_WEBHOOK_SECRET


@dataclass(frozen=True, slots=True)
class Received:
    """One delivery as the receiver saw it."""

    webhook_id: str | None
    timestamp: str | None
    body: bytes
    at: float  # time.time() on arrival
    event: Any  # the SDK's unwrapped event when the delivery verified, else None
    error: Exception | None  # why it did not verify (InvalidWebhookSignatureError, or ValueError)
    status: int  # what the receiver answered

    @property
    def verified(self) -> bool:
        """Whether the SDK accepted the signature."""
        return self.error is None


class WebhookReceiver:
    """`with WebhookReceiver(secret) as receiver:` serves at `receiver.url` until the block ends."""

    def __init__(self, secret: str = DEFAULT_WEBHOOK_SECRET, *, verify: bool = True) -> None:
        self.secret = secret
        self.verify = verify
        self.received: list[Received] = []
        self._arrivals: queue.Queue[Received] = queue.Queue()
        self._changed = threading.Condition()
        self._statuses: list[int] = []
        self._count_wanted: tuple[int, threading.Event] | None = None
        self._sdk = openai.OpenAI(api_key="unused", base_url="http://127.0.0.1:9/v1")
        self._socket = socket.socket()
        self._socket.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._socket.getsockname()[1]}/webhooks"
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._started = threading.Event()
        self._thread = threading.Thread(target=self._run, name="webhook-receiver", daemon=True)

    def answer(self, *statuses: int) -> None:
        """Answer the next verified deliveries with these statuses, in order; 200 after them."""
        with self._changed:
            self._statuses.extend(statuses)

    def next(self, timeout: float = 10.0) -> Received:
        """The next delivery not yet taken, waiting up to `timeout` seconds for it."""
        try:
            return self._arrivals.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"no webhook delivery within {timeout} s") from None

    def wait_for(self, predicate: Callable[[list[Received]], bool], timeout: float = 10.0) -> list[Received]:
        """Wait until `predicate(everything received)` holds; everything received then."""
        with self._changed:
            if not self._changed.wait_for(lambda: predicate(self.received), timeout=timeout):
                raise AssertionError(f"webhook deliveries still not as expected after {timeout} s")
            return list(self.received)

    def wait_count(self, count: int, timeout: float = 10.0) -> list[Received]:
        """Wait until `count` deliveries have arrived in all; everything received then.

        Cheaper than `wait_for` at high rates: the waiting thread wakes once, not at every delivery.
        """
        reached = threading.Event()
        with self._changed:
            self._count_wanted = (count, reached)
            if len(self.received) >= count:
                reached.set()
        if not reached.wait(timeout):
            raise AssertionError(f"{len(self.received)} webhook deliveries, not {count}, after {timeout} s")
        with self._changed:
            return list(self.received)

    def __enter__(self) -> WebhookReceiver:
        self._thread.start()
        if not self._started.wait(timeout=10):
            raise RuntimeError("the webhook receiver did not start")
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout=10)
        self._sdk.close()

    def _run(self) -> None:
        asyncio.run(self._serve())

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        app = web.Application()
        app.router.add_post("/webhooks", self._handle)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.SockSite(runner, self._socket, backlog=1024).start()
        self._started.set()
        try:
            await self._stop.wait()
        finally:
            await runner.cleanup()

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        event, error = None, None
        if self.verify:
            try:
                event = self._sdk.webhooks.unwrap(body, dict(request.headers), secret=self.secret)
            except (openai.InvalidWebhookSignatureError, ValueError) as exc:
                error = exc
        with self._changed:
            status = 400 if error else (self._statuses.pop(0) if self._statuses else 200)
            seen = Received(
                request.headers.get("webhook-id"),
                request.headers.get("webhook-timestamp"),
                body,
                time.time(),
                event,
                error,
                status,
            )
            self.received.append(seen)
            self._changed.notify_all()
            if self._count_wanted is not None and len(self.received) >= self._count_wanted[0]:
                self._count_wanted[1].set()
        self._arrivals.put(seen)
        return web.Response(status=status)
