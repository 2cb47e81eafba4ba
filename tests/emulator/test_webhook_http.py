"""The webhook delivery client: kept-alive connections, the answers HTTP/1.1 allows, and its failures."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Awaitable, Callable

import pytest

from emulator.webhook_http import DeliveryError, HttpPool

OK = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"
HEADERS = b"content-type: application/json\r\nwebhook-id: evt_1\r\n"


class Receiver:
    """A raw TCP server that answers each request with the next scripted bytes (None: never answer)."""

    def __init__(self, answers: list[bytes | None], close_after: bool = False) -> None:
        self.answers = answers
        self.close_after = close_after
        self.requests: list[bytes] = []
        self.connections = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while self.answers:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next(
                    int(line.split(b":")[1])
                    for line in head.split(b"\r\n")
                    if line.startswith(b"content-length")
                )
                self.requests.append(head + await reader.readexactly(length))
                answer = self.answers.pop(0)
                if answer is None:
                    await asyncio.sleep(10)
                    return
                writer.write(answer)
                await writer.drain()
                if self.close_after or b"connection: close" in answer or b"content-length" not in answer:
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


def _run(receiver: Receiver, client: Callable[[HttpPool, str], Awaitable[object]]) -> object:
    async def main() -> object:
        server = await asyncio.start_server(receiver.handle, "127.0.0.1", 0)
        url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/hook?x=1"
        pool = HttpPool(limit=4)
        try:
            return await client(pool, url)
        finally:
            pool.close()
            server.close()

    return asyncio.run(main())


def test_posts_reuse_one_kept_alive_connection() -> None:
    receiver = Receiver([OK, OK, OK])

    async def three(pool: HttpPool, url: str) -> list[int]:
        return [await pool.post(url, HEADERS, b'{"n":%d}' % n, 5) for n in range(3)]

    assert _run(receiver, three) == [200, 200, 200]
    assert receiver.connections == 1
    request = receiver.requests[2]
    assert request.startswith(b"POST /hook?x=1 HTTP/1.1\r\nhost: 127.0.0.1:")
    assert b"webhook-id: evt_1\r\n" in request and b"content-length: 7\r\n" in request
    assert request.endswith(b'\r\n\r\n{"n":2}')


@pytest.mark.parametrize(
    ("answer", "status"),
    [
        (b"HTTP/1.1 202 Accepted\r\ntransfer-encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n", 202),
        (b"HTTP/1.1 500 Internal Server Error\r\ncontent-length: 0\r\n\r\n", 500),
        (b"HTTP/1.1 204 No Content\r\nconnection: close\r\n\r\n", 204),
        (b"HTTP/1.1 200 OK\r\n\r\nthe body ends with the connection", 200),
    ],
)
def test_any_well_formed_answer_gives_its_status_and_the_next_post_still_works(
    answer: bytes, status: int
) -> None:
    receiver = Receiver([answer, OK])

    async def two(pool: HttpPool, url: str) -> list[int]:
        return [await pool.post(url, HEADERS, b"{}", 5), await pool.post(url, HEADERS, b"{}", 5)]

    assert _run(receiver, two) == [status, 200]


def test_a_connection_the_receiver_closed_after_answering_is_replaced() -> None:
    # Whether the close arrives before the next post (the connection is not reused) or just as it is written
    # (the post is sent again on a fresh connection), the second post succeeds on a second connection.
    receiver = Receiver([OK, OK], close_after=True)

    async def two(pool: HttpPool, url: str) -> list[int]:
        return [await pool.post(url, HEADERS, b"{}", 5), await pool.post(url, HEADERS, b"{}", 5)]

    assert _run(receiver, two) == [200, 200]
    assert receiver.connections == 2


def test_a_receiver_that_never_answers_times_out() -> None:
    async def one(pool: HttpPool, url: str) -> int:
        return await pool.post(url, HEADERS, b"{}", 0.2)

    with pytest.raises(TimeoutError):
        _run(Receiver([None]), one)


def test_an_answer_that_is_not_http_fails() -> None:
    async def one(pool: HttpPool, url: str) -> int:
        return await pool.post(url, HEADERS, b"{}", 5)

    with pytest.raises(DeliveryError):
        _run(Receiver([b"SMTP ready\r\n\r\n"]), one)


def test_nobody_listening_fails() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{sock.getsockname()[1]}/"

    async def main() -> int:
        pool = HttpPool(limit=1)
        return await pool.post(url, HEADERS, b"{}", 5)

    with pytest.raises(DeliveryError):
        asyncio.run(main())
