"""The ASGI layer in front of the routes: API-key check, counters, faults and the run-retrieve fast path.

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


class Gateway:
    """Pure ASGI middleware applied to every `/v1/...` request (never to `/_emulator/...`)."""

    def __init__(
        self, app: ASGIApp, store: Store, counters: Counters, faults: FaultInjector, api_key: str | None
    ) -> None:
        self.app = app
        self.store = store
        self.counters = counters
        self.faults = faults
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
        if method != "GET":
            # A retry is the same request again: creates on a shared path (POST /v1/responses) from
            # different callers are different requests, so the body is part of what a Retry-After binds.
            body = await _read_body(receive)
            receive = _replay(body)
            if body:
                concrete += " #" + hashlib.sha1(body).hexdigest()[:16]
        counters.request(key, concrete, time.time())
        if self.api_key is not None:
            token = _bearer(scope)
            if token != self.api_key:
                counters.status(key, 401)
                await send_json(send, 401, _auth_error(token))
                return
        fault = self.faults.decide(method, path, template)
        if self.faults.faults.latency_ms > 0 and self.faults.faults.applies(method, path, template):
            await asyncio.sleep(self.faults.faults.latency_ms / 1000)
        if fault is not None and await self._inject(fault, key, concrete, send):
            return
        if method == "GET" and template == "/v1/threads/{thread_id}/runs/{run_id}":
            await self._retrieve_run(path, key, send)
            return

        async def counting_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                counters.status(key, message["status"])
            await send(message)

        await self.app(scope, receive, counting_send)

    async def _inject(self, fault: str, key: str, concrete: str, send: Send) -> bool:
        """Serve the fault; True when the request ends here (a stall goes on to be served late)."""
        counters = self.counters
        counters.faults[fault] += 1
        settings = self.faults.faults
        if fault == "429":
            wait = settings.retry_after_s
            counters.gave_retry_after(concrete, time.time() + wait)
            counters.status(key, 429)
            body = error_body(
                "Rate limit reached for requests. Please try again later.",
                "requests",
                code="rate_limit_exceeded",
            )
            headers = [
                (b"retry-after", str(max(1, math.ceil(wait))).encode()),
                (b"retry-after-ms", str(int(wait * 1000)).encode()),
            ]
            await send_json(send, 429, body, headers)
            return True
        if fault in _FAULT_BODIES:
            counters.status(key, int(fault))
            await send_json(send, int(fault), _FAULT_BODIES[fault])
            return True
        if fault == "drop":
            # Headers promising a body that never comes: uvicorn then closes the connection mid-response.
            await send(
                {
                    "type": "http.response.start",
                    "status": 200,
                    "headers": [_JSON, (b"content-length", b"4096")],
                }
            )
            return True
        # A stall: hold the request past the client's timeout, then serve it (it still takes effect).
        await asyncio.sleep(settings.stall_s)
        return False

    async def _retrieve_run(self, path: str, key: str, send: Send) -> None:
        parts = path.split("/")
        store = self.store
        run = store.runs.get(parts[5])
        if run is None or run.thread_id != parts[3] or parts[3] not in store.threads:
            self.counters.status(key, 404)
            body = error_body(f"No run found with id '{parts[5]}'.", "invalid_request_error")
            await send_json(send, 404, body)
            return
        self.counters.status(key, 200)
        poll = (b"openai-poll-after-ms", str(store.profile.poll_after_ms).encode())
        await send_json(send, 200, run_model.body(store, run), [poll])
