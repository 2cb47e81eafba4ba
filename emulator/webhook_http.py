"""A small HTTP/1.1 POST client for webhook deliveries: pooled keep-alive connections, httptools parsing.

Deliveries are the emulator's one outbound hot path (a benchmark wants thousands a second from a process
that also serves the API). A general client spends about 0.2 ms of CPU on each POST here; writing one
pre-formatted request on a kept-alive connection and parsing only the status line costs a fraction of that.
The answer's status is all a delivery needs, so the body is parsed past and dropped.
"""

from __future__ import annotations

import asyncio
import functools
import ssl
from dataclasses import dataclass
from typing import cast
from urllib.parse import urlsplit

import httptools


class DeliveryError(Exception):
    """The receiver could not be reached, closed the connection, or answered something that is not HTTP."""


@dataclass(frozen=True, slots=True)
class Target:
    """Where a URL's requests go, and the start of each request's head."""

    host: str
    port: int
    tls: bool
    head: bytes  # request line and Host header


@functools.lru_cache(maxsize=256)
def target(url: str) -> Target:
    """The parts of an http(s) URL that a request needs."""
    parts = urlsplit(url)
    tls = parts.scheme == "https"
    host = parts.hostname or "localhost"
    port = parts.port or (443 if tls else 80)
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return Target(host, port, tls, f"POST {path} HTTP/1.1\r\nhost: {parts.netloc}\r\n".encode())


class _Connection(asyncio.Protocol):
    """One kept-alive connection carrying one request at a time."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.waiter: asyncio.Future[int] | None = None
        self.open = False
        self.heard = False  # whether any byte of the current answer arrived
        self.status: int | None = None  # the current answer's, once its head arrived

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, but they write and close alike.
        self.transport = cast(asyncio.Transport, transport)
        self.open = True

    def data_received(self, data: bytes) -> None:
        self.heard = True
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(DeliveryError(f"not an HTTP answer: {exc}"))
            self.close()

    def on_headers_complete(self) -> None:
        """httptools callback: the answer's head arrived."""
        self.status = self.parser.get_status_code()

    def on_message_complete(self) -> None:
        """httptools callback: the whole answer arrived."""
        if not self.parser.should_keep_alive():
            self.close()
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(self.parser.get_status_code())

    def connection_lost(self, exc: Exception | None) -> None:
        self.open = False
        if self.status is not None and self.waiter is not None and not self.waiter.done():
            # An answer whose body ends with the connection: its status is all a delivery needs.
            self.waiter.set_result(self.status)
        self._fail(DeliveryError(f"connection closed: {exc or 'by the receiver'}"))

    def _fail(self, exc: Exception) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(exc)

    async def send(self, request: bytes) -> int:
        """Write one request; the status of its answer."""
        assert self.transport is not None
        self.waiter = asyncio.get_running_loop().create_future()
        self.heard, self.status = False, None
        self.transport.write(request)
        return await self.waiter

    def close(self) -> None:
        """Close the connection (idempotent)."""
        self.open = False
        if self.transport is not None:
            self.transport.close()


class HttpPool:
    """At most `limit` requests in flight over kept-alive connections, reused per host and port."""

    def __init__(self, limit: int) -> None:
        self._slots = asyncio.Semaphore(limit)
        self._idle: dict[tuple[str, int, bool], list[_Connection]] = {}
        self._tls: ssl.SSLContext | None = None

    async def post(self, url: str, headers: bytes, body: bytes, timeout_s: float) -> int:
        """POST `body` with `headers` (complete `name: value\\r\\n` lines) to `url`; the answer's status.

        The timeout starts once a slot is free, so that it counts only the receiver's time.
        Raises DeliveryError, or TimeoutError after `timeout_s`.
        """
        where = target(url)
        request = b"%s%scontent-length: %d\r\n\r\n%s" % (where.head, headers, len(body), body)
        async with self._slots, asyncio.timeout(timeout_s):
            connection = self._reuse(where)
            if connection is not None:
                try:
                    return await self._exchange(where, connection, request)
                except DeliveryError:
                    # The receiver closed the kept-alive connection as we wrote: try once on a fresh one.
                    if connection.heard:
                        raise
            return await self._exchange(where, await self._connect(where), request)

    def _reuse(self, where: Target) -> _Connection | None:
        idle = self._idle.get((where.host, where.port, where.tls))
        while idle:
            connection = idle.pop()
            if connection.open:
                return connection
        return None

    async def _exchange(self, where: Target, connection: _Connection, request: bytes) -> int:
        try:
            status = await connection.send(request)
        except BaseException:
            connection.close()
            raise
        if connection.open:
            self._idle.setdefault((where.host, where.port, where.tls), []).append(connection)
        return status

    async def _connect(self, where: Target) -> _Connection:
        loop = asyncio.get_running_loop()
        tls = None
        if where.tls:
            tls = self._tls = self._tls or ssl.create_default_context()
        try:
            _, connection = await loop.create_connection(
                _Connection, where.host, where.port, ssl=tls, server_hostname=where.host if tls else None
            )
        except OSError as exc:
            raise DeliveryError(f"cannot connect to {where.host}:{where.port}: {exc}") from None
        return connection

    def close(self) -> None:
        """Close every idle connection."""
        for idle in self._idle.values():
            for connection in idle:
                connection.close()
        self._idle.clear()
