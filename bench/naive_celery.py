"""The naive Celery contender: one task per run that blocks a pool thread in ``runs.create_and_poll``.

    celery -A bench.naive_celery worker --pool threads --concurrency 100

The broker is ``NAIVE_BROKER_URL``; the API is ``OPENAI_BASE_URL``/``OPENAI_API_KEY``. Each task writes
its run's end (wall-clock time after ``create_and_poll`` returned, and the status) to the Redis hash
`ENDS_KEY`, keyed by run id, so the bench can join it with the emulator's ``completed_at``.
"""

from __future__ import annotations

import functools
import json
import os
import time

import openai
import redis
from celery import Celery

ENDS_KEY = "naive:ends"
"""Hash: run id -> {"index", "end", "status"} written when a task's ``create_and_poll`` returned."""
TASK = "naive.run"


def make_app(broker: str) -> Celery:
    """A Celery app on ``broker``: JSON only, late acks off (the common default), no result backend."""
    app = Celery("naive", broker=broker)
    app.conf.update(
        task_serializer="json",
        accept_content=["json"],
        task_ignore_result=True,
        worker_hijack_root_logger=False,
        broker_connection_retry_on_startup=True,
    )
    return app


app = make_app(os.environ.get("NAIVE_BROKER_URL", "redis://127.0.0.1:6379/0"))


@functools.cache
def _clients() -> tuple[openai.OpenAI, redis.Redis]:
    return openai.OpenAI(), redis.Redis.from_url(os.environ.get("NAIVE_BROKER_URL", ""))


@app.task(name=TASK)
def run(index: int, assistant_id: str) -> None:
    """Create a thread, then ``runs.create_and_poll`` on it, and record when it returned."""
    client, ends = _clients()
    thread = client.beta.threads.create(messages=[{"role": "user", "content": f"question {index}"}])
    result = client.beta.threads.runs.create_and_poll(thread_id=thread.id, assistant_id=assistant_id)
    end = time.time()
    ends.hset(ENDS_KEY, result.id, json.dumps({"index": index, "end": end, "status": result.status}))
