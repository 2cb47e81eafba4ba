"""One probe per Redis connection the system makes: each reaches Redis through the client that component
builds, from the settings given (TLS and Sentinel tests run them all)."""

from __future__ import annotations

import asyncio
import base64
import os
import time
from collections.abc import Callable
from typing import Any

import orjson
import pytest
from aiohttp.test_utils import TestClient, TestServer
from flower.utils.broker import Broker
from helpers import webhook_headers
from pydantic import SecretStr
from redbeat.schedulers import get_redis

from schemas.job import JobStatus
from worker import broker as broker_module
from worker import settings as settings_module
from worker.app import create_app
from worker.client import Jobs
from worker.connections import make_store, redis_client
from worker.poller import Poller
from worker.settings import Settings
from worker.watchdog import kombu_backlog
from worker.webhooks import create_app as create_receiver


def forget_settings() -> None:
    """Drop this process's cached settings (and what was built from them): the next read is fresh."""
    settings_module.get_settings.cache_clear()
    broker_module.quarantine_at.cache_clear()


def configure(monkeypatch: pytest.MonkeyPatch, env: dict[str, str]) -> Settings:
    """Make ``env`` this process's settings, and nothing else (a worker reads them the same way)."""
    for name in [n for n in os.environ if n.startswith(("AJ_", "OPENAI_"))]:
        monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    forget_settings()
    return settings_module.get_settings()


SECRET = "whsec_" + base64.b64encode(b"assistant-jobs-probe-test-secret").decode()
"""The webhook receiver's secret in the probe."""


def store(s: Settings) -> None:
    """The job store (every task, the CLI, the exporter's census)."""
    make_store(s).census()


def producer(s: Settings) -> None:
    """A producer's `Jobs`: the submit script on the store, the start message through the broker."""
    jobs = Jobs(s, celery=create_app(s))
    ref = jobs.submit({"kind": "cleanup", "targets": ["jobs"], "dry_run": True})
    assert jobs.get(ref.id).status == JobStatus.QUEUED


def broker(s: Settings) -> None:
    """Celery's broker connection (kombu), as the worker's consumer and the watchdog open it."""
    app = create_app(s)
    assert kombu_backlog(app.connection_for_write)(s.queue_runs) >= 0


def poll_loop(s: Settings) -> None:
    """The poll loop's asyncio client."""

    async def claim() -> None:
        poller = Poller(s, lambda *_: None, handlers={})
        async with poller.session() as session:
            await session.tick()

    asyncio.run(claim())


def webhook_receiver(s: Settings) -> None:
    """The webhook receiver's asyncio client: a signed delivery is acted on (200), not refused with 503."""

    async def deliver() -> None:
        app = create_receiver(s.model_copy(update={"webhook_secret": SecretStr(SECRET)}))
        body = orjson.dumps({"id": "evt_1", "object": "event", "type": "response.completed",
                             "created_at": int(time.time()), "data": {"id": "resp_unknown"}})  # fmt: skip
        async with TestClient(TestServer(app)) as client:
            answer = await client.post(s.webhook_path, data=body, headers=webhook_headers(body, SECRET))
            if answer.status != 200:  # the receiver logs why Redis was unreachable, and answers 503
                raise RuntimeError(f"{answer.status} {await answer.text()}")

    asyncio.run(deliver())


def beat(s: Settings) -> None:
    """Beat: redbeat's client, from redbeat_redis_url, redbeat_redis_options and redbeat_redis_use_ssl."""
    get_redis(create_app(s)).ping()


def flower(s: Settings) -> None:
    """Flower's broker page: its own client, from the app's broker URL, transport options and TLS options."""
    app = create_app(s)
    with app.connection() as conn:
        uri = conn.as_uri(include_password=True)
    found = Broker(
        uri, broker_options=app.conf.broker_transport_options, broker_use_ssl=app.conf.broker_use_ssl
    )

    async def lengths() -> list[dict[str, Any]]:
        try:
            return list(await found.queues([s.queue_runs]))
        finally:
            # Flower closes the primary's client after each look but not its Sentinel's connections to the
            # sentinels (its own leak, one per page view); closed here so the test leaves nothing open.
            manager = getattr(found.redis.connection_pool, "sentinel_manager", None)
            for client in getattr(manager, "sentinels", []):
                await client.aclose()

    assert asyncio.run(lengths())[0]["name"] == s.queue_runs


def quarantine(s: Settings) -> None:
    """The broker channel's quarantine list (on the store's Redis)."""
    broker_module.quarantine_at(s.redis_url).list.held()


def durability_check(s: Settings) -> None:
    """The worker's start-up durability check (INFO on the client it builds)."""
    redis_client(s, socket_timeout=5).info("persistence")


PROBES: dict[str, Callable[[Settings], None]] = {
    "store": store,
    "producer": producer,
    "broker": broker,
    "poll loop": poll_loop,
    "webhook receiver": webhook_receiver,
    "beat": beat,
    "flower": flower,
    "quarantine": quarantine,
    "durability check": durability_check,
}
