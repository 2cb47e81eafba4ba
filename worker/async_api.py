"""The lean HTTP path to the API: an aiohttp session for the calls made by the thousand (the poll loop's
retrieves, the starts' creates, the finishes' message lists), counted like the SDK's requests, and for
those the SDK's own error semantics.

Why not the SDK here: a create through ``openai.OpenAI`` costs about 1.5 ms of CPU (its httpx2 stack and
models), an aiohttp POST with an orjson body about a tenth of that (``bench/start_cost.py``); at hundreds
of starts a second the client decides how many a core keeps up with. What the SDK gives a caller is kept:
a non-2xx answer raises the exception the SDK would raise (built by the SDK's own status-error mapping),
a dropped connection `openai.APIConnectionError`, a timeout `openai.APITimeoutError`; and every request
passes the shared rate gate (`worker.rate_gate`) and is counted in ``aj_api_requests_total``. So the flows'
error handling and retries do not know which client made a call.

`ApiLoop` runs one event loop in a daemon thread per process, for synchronous code (a Celery task) that
wants many calls in flight at once: ``loop.run(lambda api: gather(...))``.
"""

from __future__ import annotations

import asyncio
import functools
import os
import threading
from collections.abc import Awaitable, Callable, Mapping
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, TypeVar

import aiohttp
import httpx2
import openai
import orjson
from yarl import URL

from worker.metrics import ApiCounts, outcome, process_counts
from worker.openai_client import api_base, auth_headers, openai_client, rate_gate, request_timeout
from worker.rate_gate import RateGate
from worker.settings import Settings, get_settings

T = TypeVar("T")

JSON_HEADERS = {"Content-Type": "application/json"}


@dataclass(frozen=True)
class Reply:
    """An answer of the API, read whole."""

    status: int
    headers: Mapping[str, str]
    body: bytes


class HotHttp:
    """An aiohttp session to the API (the bearer token, a connection limit, a timeout a request) whose every
    request is counted by endpoint and outcome, as `CountingTransport` counts the SDK's: connection errors
    and timeouts included. Counted here rather than by an aiohttp trace, whose signal objects are built on
    every request (about a tenth of the poll loop's CPU at thousands of retrieves a second)."""

    def __init__(self, settings: Settings, counts: ApiCounts, limit: int, timeout: float):
        # Opened inside the event loop that will use it.
        self.session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=limit, ttl_dns_cache=300),
            timeout=aiohttp.ClientTimeout(total=timeout),
            headers=auth_headers(settings),
            raise_for_status=False,
        )
        self.counts = counts

    async def request(self, method: str, url: URL, **options: Any) -> Reply:
        """Send a request and read its answer; aiohttp's exceptions for a timeout or a failed connection."""
        try:
            async with self.session.request(method, url, **options) as response:
                reply = Reply(response.status, response.headers, await response.read())
        except TimeoutError:  # aiohttp's own timeouts are TimeoutErrors too
            self.counts.add(method, url.path, "timeout")
            raise
        except aiohttp.ClientError:
            self.counts.add(method, url.path, "connection")
            raise
        self.counts.add(method, url.path, outcome(reply.status))
        return reply

    async def get(self, url: str) -> Reply:
        """``GET url``."""
        return await self.request("GET", URL(url))

    async def __aenter__(self) -> HotHttp:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the session and its connections."""
        await self.session.close()


class AsyncApi:
    """JSON calls on a hot session, through the rate gate, raising the SDK's exceptions."""

    def __init__(self, http: HotHttp, base: str, gate: RateGate | None, sdk: openai.OpenAI):
        self.http = http
        self.base = base
        self.gate = gate
        self.sdk = sdk
        """Only its status-error mapping is used (``_make_status_error_from_response``)."""

    async def post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        """``POST {base}{path}`` with a JSON body; the parsed answer."""
        return await self._call("POST", path, data=orjson.dumps(body), headers=JSON_HEADERS)

    async def get(self, path: str, params: dict[str, str] | None = None) -> dict[str, Any]:
        """``GET {base}{path}``; the parsed answer."""
        return await self._call("GET", path, params=params)

    async def _call(self, method: str, path: str, **options: Any) -> dict[str, Any]:
        url = URL(self.base + path)
        route = f"{method} {url.path}"
        if self.gate is not None:
            self.gate.check_route(route)
        try:
            reply = await self.http.request(method, url, **options)
        except TimeoutError as exc:
            raise openai.APITimeoutError(request=httpx2.Request(method, str(url))) from exc
        except aiohttp.ClientError as exc:
            error = openai.APIConnectionError(request=httpx2.Request(method, str(url)))
            raise error from exc
        status, headers, raw = reply.status, reply.headers, reply.body
        if self.gate is not None:
            self.gate.record_status(route, status, headers)
        if 200 <= status < 300:
            body: dict[str, Any] = orjson.loads(raw)
            return body
        answer = httpx2.Response(
            status, headers=list(headers.items()), content=raw, request=httpx2.Request(method, str(url))
        )
        raise self.sdk._make_status_error_from_response(answer)


class ApiLoop:
    """An event loop in a daemon thread with an `AsyncApi` on it, for synchronous callers. Started on
    first use, so a forked pool process starts its own (a loop and its sockets never cross a fork)."""

    def __init__(self, settings: Settings, counts: ApiCounts, gate: RateGate | None, sdk: openai.OpenAI):
        self.settings = settings
        self.counts = counts
        self.gate = gate
        self.sdk = sdk
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._api: AsyncApi | None = None
        self._pid = 0
        self._thread: threading.Thread | None = None

    def run(self, work: Callable[[AsyncApi], Awaitable[T]]) -> T:
        """Run ``work(api)`` on the loop and wait for its result (or its exception)."""
        loop, api = self._started()
        future: Future[T] = asyncio.run_coroutine_threadsafe(_awaited(work(api)), loop)
        return future.result()

    def _started(self) -> tuple[asyncio.AbstractEventLoop, AsyncApi]:
        with self._lock:
            if self._loop is None or self._api is None or self._pid != os.getpid():
                self._pid = os.getpid()  # a loop made before a fork has no thread in the child
                loop = asyncio.new_event_loop()
                self._thread = threading.Thread(target=loop.run_forever, name="aj-api", daemon=True)
                self._thread.start()
                self._api = asyncio.run_coroutine_threadsafe(self._open(), loop).result()
                self._loop = loop
            return self._loop, self._api

    async def _open(self) -> AsyncApi:
        s = self.settings
        http = HotHttp(s, self.counts, s.start_concurrency, request_timeout(s))
        return AsyncApi(http, api_base(s), self.gate, self.sdk)

    def close(self) -> None:
        """Close the session and stop the loop."""
        with self._lock:
            loop, api, self._loop, self._api = self._loop, self._api, None, None
        if loop is None or api is None:
            return
        asyncio.run_coroutine_threadsafe(api.http.close(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        if self._thread is not None:
            self._thread.join(10)
        loop.close()


@functools.cache
def api_loop() -> ApiLoop:
    """This process's `ApiLoop`: its settings, its API counts, the shared rate gate, the SDK's errors."""
    return ApiLoop(get_settings(), process_counts(), rate_gate(), openai_client())


async def _awaited(work: Awaitable[T]) -> T:
    return await work
