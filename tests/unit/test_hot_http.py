"""The hot path's HTTP (`worker.async_api.HotHttp`, the poll loop's retrieves and the starts' creates):
every request is counted by endpoint and outcome, failures to connect and timeouts included, against the
emulator over real HTTP."""

from __future__ import annotations

import asyncio
from collections import Counter

import aiohttp
import pytest

from devkit.redis_server import free_port
from emulator.server import EmulatorHandle
from worker.async_api import HotHttp
from worker.metrics import ApiCounts
from worker.settings import Settings


class Collected:
    """An `ApiCounters` that keeps what it is given."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()

    def add(self, counts: Counter[str]) -> None:
        self.counts.update(counts)


def test_every_request_is_counted_by_endpoint_and_outcome(
    emulator: EmulatorHandle, settings: Settings
) -> None:
    collected = Collected()
    counts = ApiCounts(collected)  # type: ignore[arg-type]
    emulator.set_faults(latency_ms=5000, paths=["/v1/vector_stores/vs_slow1"])
    closed = f"http://127.0.0.1:{free_port()}/v1"

    async def requests() -> list[int | str]:
        async with HotHttp(settings, counts, limit=10, timeout=1.0) as http:
            found = await http.get(emulator.base_url + "/threads/thread_404")
            outcomes: list[int | str] = [found.status]
            for url in (closed + "/threads/thread_1", emulator.base_url + "/vector_stores/vs_slow1"):
                try:
                    await http.get(url)
                except TimeoutError:
                    outcomes.append("timeout")
                except aiohttp.ClientError:
                    outcomes.append("connection")
            return outcomes

    # When a missing thread is retrieved, a closed port is dialled and a slow answer outlasts the timeout
    outcomes = asyncio.run(requests())
    counts.flush()

    # Then each raised what a caller tells apart, and each was counted under its endpoint
    assert outcomes == [404, "connection", "timeout"]
    assert collected.counts == {
        "GET /threads/{id}|not_found": 1,
        "GET /threads/{id}|connection": 1,
        "GET /vector_stores/{id}|timeout": 1,
    }


@pytest.fixture
def settings() -> Settings:
    return Settings(openai_api_key="sk-test")
