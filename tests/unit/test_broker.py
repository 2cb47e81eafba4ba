"""The envelope screen, the quarantine, and which brokers use them."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import fakeredis
import pytest
import redis
from kombu import Connection

from worker import broker
from worker import constants as c
from worker.app import create_app
from worker.metrics import registry
from worker.settings import Settings
from worker.store import Store, quarantine


def envelope(**changes: Any) -> dict[str, Any]:
    """A task message as kombu writes one to a Redis list; ``changes`` replace top-level fields."""
    message: dict[str, Any] = {
        "body": "W1tdLCB7fSwge31d",  # base64 of [[], {}, {}]
        "content-encoding": "utf-8",
        "content-type": "application/json",
        "headers": {"task": "aj.run.start", "id": "j1"},
        "properties": {
            "body_encoding": "base64",
            "delivery_tag": "tag-1",
            "delivery_info": {"exchange": "", "routing_key": "runs"},
        },
    }
    return {**message, **changes}


def raw(message: Any) -> bytes:
    return json.dumps(message).encode()


def test_a_sound_envelope_passes() -> None:
    assert broker.envelope_problem(raw(envelope())) is None
    assert broker.envelope_problem(raw(envelope(body=""))) is None  # kombu delivers an empty body as is
    plain = envelope(body='{"a": 1}', properties={**envelope()["properties"], "body_encoding": "utf-8"})
    assert broker.envelope_problem(raw(plain)) is None


def test_what_celery_itself_sends_passes(redis_url: str, redis_client: redis.Redis) -> None:
    app = create_app(Settings(redis_url=redis_url))
    app.send_task(c.TASK_SCHEDULED_CLEANUP, args=[["jobs"]], queue="maintenance")
    [sent] = redis_client.lrange("maintenance", 0, -1)
    assert broker.envelope_problem(sent) is None


@pytest.mark.parametrize(
    ("message", "problem"),
    [
        (b"not json {", "not JSON"),
        (b"\xff\xfe", "not JSON"),
        (b"[1,2,3]", "not a JSON object"),
        (b'"text"', "not a JSON object"),
        (raw({"body": "x"}), "no properties object"),
        (
            raw(envelope(properties={"delivery_info": {"exchange": "", "routing_key": "q"}})),
            "no delivery_tag",
        ),
        (raw(envelope(properties={"delivery_tag": "t", "delivery_info": None})), "no delivery_info"),
        (raw(envelope(headers=[1])), "headers not an object"),
        (raw(envelope(body=5)), "body not a string"),
        (raw(envelope(body="not base64")), "body not valid base64"),
        (raw(envelope(properties={**envelope()["properties"], "body_encoding": "rot13"})), "unknown"),
    ],
)
def test_each_malformed_envelope_is_named(message: bytes, problem: str) -> None:
    found = broker.envelope_problem(message)
    assert found is not None and found.startswith(problem), found


def test_the_quarantine_keeps_the_newest_messages_up_to_its_cap(monkeypatch: pytest.MonkeyPatch) -> None:
    # Given a quarantine capped at 3
    monkeypatch.setattr(quarantine, "QUARANTINE_MAX", 3)
    client = fakeredis.FakeRedis()
    aside = broker.Quarantine(client)

    # When five messages are set aside
    for i in range(5):
        aside.put(f"bad {i}".encode(), "runs", "not JSON")

    # Then the three newest are kept, newest first, and the exporter reports them
    assert quarantine.Quarantine(client).held() == [b"bad 4", b"bad 3", b"bad 2"]
    store = Store.on(client, result_ttl=60, idempotency_ttl=60, events_maxlen=1000)
    assert registry(store, follow_events=False).get_sample_value("aj_quarantined_messages") == 3


def test_a_log_line_shows_only_the_start_of_a_large_message() -> None:
    line = broker.preview(b"x" * 10_000)
    assert len(line) < 200 and "10000 bytes" in line


@pytest.fixture
def redis_broker(
    redis_url: str, redis_client: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Connection]:
    """A kombu connection through this module's transport on the test Redis, quarantining there."""
    monkeypatch.setattr(broker, "store_url", lambda: redis_url)
    with Connection(redis_url, transport=broker.TRANSPORTS["redis"]) as conn:
        yield conn


def test_basic_get_sets_a_malformed_message_aside_and_returns_the_next(
    redis_broker: Connection, redis_client: redis.Redis
) -> None:
    # Given a malformed message ahead of a sound one on a queue
    redis_client.lpush("q", b"[1,2,3]")
    redis_client.lpush("q", raw(envelope(properties={**envelope()["properties"], "delivery_tag": "good"})))

    # When a client takes messages one at a time (RPOP, not the worker's BRPOP)
    channel = redis_broker.default_channel
    first = channel.basic_get("q", no_ack=True)
    second = channel.basic_get("q", no_ack=True)

    # Then the malformed one reads as "nothing there" and is quarantined; the sound one follows
    assert first is None
    assert quarantine.Quarantine(redis_client).held() == [b"[1,2,3]"]
    assert second is not None and second.delivery_tag == "good"


@pytest.mark.parametrize(
    ("url", "transport"),
    [
        ("redis://:secret@127.0.0.1:6379/2", broker.TRANSPORTS["redis"]),
        ("rediss://:secret@cache.example.com:6380/0?ssl_cert_reqs=required", broker.TRANSPORTS["rediss"]),
        ("amqp://guest:secret@127.0.0.1:5672//", None),
    ],
)
def test_only_redis_brokers_use_the_screening_transport(url: str, transport: str | None) -> None:
    app = create_app(Settings(broker_url=url))
    assert app.conf.broker_transport == transport
    # ...and the connection still shows as the URL it was given (the banner, Flower's broker page)
    with app.connection_for_read() as conn:
        assert conn.as_uri(include_password=True) == url.split("?")[0]
    if transport is None:  # RabbitMQ keeps Celery's own consumer
        assert app.conf.worker_consumer == "celery.worker.consumer:Consumer"
    else:
        assert app.conf.worker_consumer == broker.CONSUMER
        assert app.conf.broker_transport_options["visibility_timeout"]  # the app's options kept


@pytest.mark.parametrize("query", ["", "?ssl_cert_reqs=required"])
def test_a_rediss_broker_keeps_tls(query: str) -> None:
    # kombu turns TLS on for rediss only when the scheme names the transport: it must stay on with ours
    app = create_app(Settings(broker_url=f"rediss://cache.example.com:6380/0{query}"))
    with app.connection_for_read() as conn:
        assert conn.ssl
        assert conn.transport_cls == broker.TRANSPORTS["rediss"]
