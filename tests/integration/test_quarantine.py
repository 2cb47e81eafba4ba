"""Malformed broker messages with a real worker: each is set aside and the same worker process goes on."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from typing import Any

import pytest
import redis
from helpers import WorkerProcess

from schemas.job import JobStatus
from worker.client import Jobs
from worker.metrics import registry
from worker.store import Store, quarantine

RUN: dict[str, Any] = {
    "kind": "run",
    "backend": "responses",
    "model": "gpt-4o",
    "messages": [{"role": "user", "content": "hi"}],
}
"""A real job for the runs queue (the responses backend needs nothing created first)."""


def envelope(body: str, headers: dict[str, Any] | None, tag: str) -> bytes:
    """A message for the ``runs`` queue shaped as kombu writes one, with the given body and headers."""
    return json.dumps(
        {
            "body": body,
            "content-encoding": "utf-8",
            "content-type": "application/json",
            "headers": headers,
            "properties": {
                "body_encoding": "base64",
                "delivery_tag": tag,
                "delivery_info": {"exchange": "", "routing_key": "runs"},
                "delivery_mode": 2,
                "priority": 0,
            },
        }
    ).encode()


def b64(value: Any) -> str:
    return base64.b64encode(json.dumps(value).encode()).decode()


def survived(handle: WorkerProcess) -> None:
    """The worker process is the one started, and its consumer never died or restarted."""
    assert handle.proc.poll() is None
    log = handle.log.read_text(errors="replace")
    assert "Unrecoverable error" not in log
    assert "Connection to broker lost" not in log


def quarantined_metric(client: redis.Redis) -> float | None:
    store = Store.on(client, result_ttl=60, idempotency_ttl=60, events_maxlen=1000)
    return registry(store, follow_events=False).get_sample_value("aj_quarantined_messages")


@pytest.mark.slow
def test_malformed_envelopes_are_set_aside_and_the_worker_runs_the_next_job(
    jobs: Jobs, worker: Callable[..., WorkerProcess], redis_client: redis.Redis
) -> None:
    # Given a worker, and three malformed messages waiting on its runs queue: not JSON, JSON but not an
    # object, and an envelope whose body is not base64
    handle = worker()
    bad = [
        b"not json {",
        b"[1,2,3]",
        envelope("not base64", {"task": "aj.run.start", "id": "bad-base64"}, "tag-1"),
    ]
    for raw in bad:
        redis_client.lpush("runs", raw)

    # When a real job is submitted behind them
    record = jobs.wait(jobs.submit(RUN).id, timeout=60)

    # Then the job completed on the same worker process, which never died or restarted
    assert record.status == JobStatus.COMPLETED, record
    survived(handle)
    # ...the three raw messages are in the quarantine list as they were sent, newest first
    assert quarantine.Quarantine(redis_client).held() == bad[::-1]
    # ...each logged once, naming the queue
    log = handle.log.read_text(errors="replace")
    assert log.count("set aside a malformed message from queue 'runs'") == 3
    # ...and the exporter counts them
    assert quarantined_metric(redis_client) == 3


def test_task_messages_celery_cannot_read_are_set_aside_and_not_redelivered(
    jobs: Jobs, worker: Callable[..., WorkerProcess], redis_client: redis.Redis
) -> None:
    # Given a worker, and two task messages with sound envelopes that Celery's consumer cannot read: one
    # without a task id, one whose body is not [args, kwargs, embed]
    handle = worker()
    redis_client.lpush("runs", envelope(b64([[], {}, {}]), {"task": "aj.run.start"}, "tag-no-id"))
    redis_client.lpush("runs", envelope(b64([1]), {"task": "aj.run.start", "id": "short-body"}, "tag-short"))

    # When a real job is submitted behind them
    record = jobs.wait(jobs.submit(RUN).id, timeout=60)

    # Then the job completed on the same worker process, which never died or restarted
    assert record.status == JobStatus.COMPLETED, record
    survived(handle)
    # ...both messages are in the quarantine list, and neither waits among the unacked to be redelivered
    kept = [json.loads(raw) for raw in quarantine.Quarantine(redis_client).held()]
    tags = sorted(m["properties"]["delivery_tag"] for m in kept)
    assert tags == ["tag-no-id", "tag-short"]
    assert not {t.encode() for t in tags} & set(redis_client.hkeys("unacked"))  # kombu's unacked hash
    assert quarantined_metric(redis_client) == 2
