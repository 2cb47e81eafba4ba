"""The ASGI layer in front of the routes: API-key check, counters, rate-limit headers, faults and the
run-retrieve fast path.

Run retrieve is the benchmark's hot path, so it is answered here from the run's cached body without going
through Starlette's routing and request objects.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from emulator import run_model
from emulator.counters import Counters, route_template
from emulator.errors import error_body
from emulator.faults import FaultInjector
from emulator.ratelimits import RateLimits, estimated_tokens
from emulator.state import Store

_JSON = (b"content-type", b"application/json")
_FAULT_BODIES = {
    "500": error_body(
        "The server had an error while processing your request. Sorry about that!", "server_error"
    ),
    "503": error_body("The engine is currently overloaded, please try again later.", "server_error"),
}


async def send_json(
    send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]] | None = None
) -> None:
    """Send a complete JSON response."""
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [_JSON, (b"content-length", str(len(body)).encode()), *(headers or ())],
        }
    )
    await send({"type": "http.response.body", "body": body})


def _bearer(scope: Scope) -> str | None:
    for name, value in scope["headers"]:
        if name == b"authorization":
            text = value.decode("latin-1")
            return text[7:].strip() if text[:7].lower() == "bearer " else ""
    return None


def _auth_error(token: str | None) -> bytes:
    if not token:
        return error_body(
            "You didn't provide an API key. You need to provide your API key in an Authorization header "
            "using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).",
            "invalid_request_error",
        )
    shown = f"{token[:3]}*{token[-4:]}" if len(token) > 8 else "***"
    return error_body(
        f"Incorrect API key provided: {shown}. You can find your API key at "
        "https://platform.openai.com/account/api-keys.",
        "invalid_request_error",
        code="invalid_api_key",
    )


async def _read_body(receive: Receive) -> bytes:
    chunks = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            return b"".join(chunks)


def _replay(body: bytes) -> Receive:
    sent = False

    async def receive() -> Message:
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return receive


def _content_type(scope: Scope) -> bytes:
    for name, value in scope["headers"]:
        if name == b"content-type":
            return bytes(value)
    return b""


def _promising_more(headers: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """The headers with a content-length one byte longer, so that even an empty body counts as cut short."""
    return [
        (name, str(int(value) + 1).encode()) if name == b"content-length" else (name, value)
        for name, value in headers
    ]


def answering_send(
    send: Send, counters: Counters, key: str, extra: list[tuple[bytes, bytes]], drop_after: bool
) -> Send:
    """`send` that counts the status, adds `extra` headers and, when `drop_after`, sends the head but never
    the body: uvicorn then closes the connection mid-response, after the request took effect."""

    async def wrapped(message: Message) -> None:
        if message["type"] == "http.response.start":
            counters.status(key, message["status"])
            headers = [*message.get("headers", ()), *extra]
            message = {**message, "headers": _promising_more(headers) if drop_after else headers}
        elif drop_after:
            return
        await send(message)

    return wrapped


class Gateway:
    """Pure ASGI middleware applied to every `/v1/...` request (never to `/_emulator/...`)."""

    def __init__(
        self,
        app: ASGIApp,
        store: Store,
        counters: Counters,
        faults: FaultInjector,
        limits: RateLimits,
        api_key: str | None,
    ) -> None:
        self.app = app
        self.store = store
        self.counters = counters
        self.faults = faults
        self.limits = limits
        self.api_key = api_key

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope.get("path", "")
        if scope["type"] != "http" or not path.startswith("/v1/"):
            await self.app(scope, receive, send)
            return
        method: str = scope["method"]
        template = route_template(path)
        key = f"{method} {template}"
        counters = self.counters
        concrete = f"{method} {path}"
        body = b""
        if method != "GET":
            # A retry is the same request again: creates on a shared path (POST /v1/responses) from
            # different callers are different requests, so the body is part of what a Retry-After binds.
            body = await _read_body(receive)
            receive = _replay(body)
            if body:
                concrete += " #" + hashlib.sha1(body).hexdigest()[:16]
        now = time.time()
        counters.request(key, concrete, now)
        if self.api_key is not None:
            token = _bearer(scope)
            if token != self.api_key:
                limits = self._limit_headers(now, None, body, scope)
                await send_json(answering_send(send, counters, key, limits, False), 401, _auth_error(token))
                return
        fault = self.faults.decide(method, path, template)
        limits = self._limit_headers(now, fault, body, scope)
        answer = answering_send(send, counters, key, limits, drop_after=fault == "drop_after")
        if self.faults.faults.latency_ms > 0 and self.faults.faults.applies(method, path, template):
            await asyncio.sleep(self.faults.faults.latency_ms / 1000)
        if fault is not None and await self._inject(fault, key, concrete, send, answer):
            return
        if method == "GET" and template == "/v1/threads/{thread_id}/runs/{run_id}":
            await self._retrieve_run(path, answer)
            return
        await self.app(scope, receive, answer)

    def _limit_headers(
        self, now: float, fault: str | None, body: bytes, scope: Scope
    ) -> list[tuple[bytes, bytes]]:
        profile = self.store.profile
        if fault == "429":
            wait = self.faults.faults.retry_after_s
            return self.limits.exhausted(now, wait, profile.ratelimit_requests, profile.ratelimit_tokens)
        tokens = estimated_tokens(body, _content_type(scope))
        return self.limits.charge(now, tokens, profile.ratelimit_requests, profile.ratelimit_tokens)

    async def _inject(self, fault: str, key: str, concrete: str, send: Send, answer: Send) -> bool:
        """Serve the fault; True when the request ends here (a stall, or a drop after the request took
        effect, goes on to be served: `answer` then drops the answer)."""
        counters = self.counters
        counters.faults[fault] += 1
        settings = self.faults.faults
        if fault == "429":
            wait = settings.retry_after_s
            now = time.time()
            counters.gave_retry_after(concrete, now + wait)
            counters.refused(key, now, now + wait)
            body = error_body(
                "Rate limit reached for requests. Please try again later.",
                "requests",
                code="rate_limit_exceeded",
            )
            headers = [
                (b"retry-after", str(max(1, math.ceil(wait))).encode()),
                (b"retry-after-ms", str(int(wait * 1000)).encode()),
            ]
            await send_json(answer, 429, body, headers)
            return True
        if fault in _FAULT_BODIES:
            await send_json(answer, int(fault), _FAULT_BODIES[fault])
            return True
        if fault == "drop":
            # Headers promising a body that never comes: uvicorn then closes the connection mid-response.
            # Sent past `answer`, so no status is counted: the request never reached the API.
            await send(
                {
                    "type": "http.response.start",
                    "status": 200,
                    "headers": [_JSON, (b"content-length", b"4096")],
                }
            )
            return True
        if fault == "stall":
            # Hold the request past the client's timeout, then serve it (it still takes effect).
            await asyncio.sleep(settings.stall_s)
        return False

    async def _retrieve_run(self, path: str, send: Send) -> None:
        parts = path.split("/")
        store = self.store
        run = store.runs.get(parts[5])
        if run is None or run.thread_id != parts[3] or parts[3] not in store.threads:
            body = error_body(f"No run found with id '{parts[5]}'.", "invalid_request_error")
            await send_json(send, 404, body)
            return
        poll = (b"openai-poll-after-ms", str(store.profile.poll_after_ms).encode())
        await send_json(send, 200, run_model.body(store, run), [poll])
