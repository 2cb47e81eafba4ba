"""The beat scheduler's outage handling, in this process against the test Redis."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
import redis
from celery import Celery
from redis.backoff import NoBackoff
from redis.retry import Retry

from devkit.redis_server import free_port
from worker import beat
from worker.app import create_app
from worker.settings import Settings


def test_retries_back_off_from_half_a_second_to_the_cap() -> None:
    assert [beat.retry_delay(n, 5.0) for n in range(1, 7)] == [0.5, 1.0, 2.0, 4.0, 5.0, 5.0]
    assert beat.retry_delay(100, 5.0) == 5.0
    # never longer than beat's own longest sleep, never shorter than the first retry
    assert [beat.retry_delay(n, 2.0) for n in (1, 3, 9)] == [0.5, 2.0, 2.0]
    assert beat.retry_delay(4, 0.1) == 0.5


@pytest.fixture
def app(redis_url: str, redis_client: redis.Redis) -> Celery:
    return create_app(Settings(redis_url=redis_url, sweep_jobs_s=3600, beat_max_interval=1))


@pytest.fixture
def scheduler(app: Celery) -> Iterator[beat.Scheduler]:
    sched = beat.Scheduler(app=app)
    yield sched
    sched.close()


def schedule_size(app: Celery) -> int:
    return int(beat.get_redis(app).zcard(app.redbeat_conf.schedule_key))


def test_a_lock_lost_with_redis_data_is_taken_again_and_the_schedule_written_again(
    app: Celery, scheduler: beat.Scheduler, redis_client: redis.Redis
) -> None:
    # Given a scheduler that took the lock and wrote its schedule
    scheduler.tick()
    assert scheduler.lock is not None and schedule_size(app) > 0

    # When Redis comes back empty (restarted without persistence)
    redis_client.flushall()

    # Then the next tick gives the lock up instead of raising...
    assert scheduler.tick() == beat.FIRST_RETRY_S
    assert scheduler.lock is None
    # ...and the one after takes it again and writes the schedule again
    scheduler.tick()
    assert scheduler.lock is not None
    assert redis_client.exists(app.redbeat_conf.lock_key)
    assert schedule_size(app) > 0


def test_an_outage_is_logged_once_and_retried_with_backoff(
    app: Celery, scheduler: beat.Scheduler, caplog: pytest.LogCaptureFixture
) -> None:
    # Given a scheduler that holds the lock
    scheduler.tick()
    client = beat.get_redis(app)

    # When Redis is unreachable for three ticks
    # nothing listens there, and no retries: each tick fails at once, well within the lock's 5 s
    app.redbeat_redis = redis.Redis(port=free_port(), retry=Retry(NoBackoff(), 0))
    with caplog.at_level(logging.INFO, logger="celery.beat"):
        delays = [scheduler.tick() for _ in range(3)]
        # ...and then answers again
        app.redbeat_redis = client
        after = scheduler.tick()

    # Then each tick waited longer, the outage was logged once, and its end too; the beat kept its lock
    assert delays == [0.5, 1.0, 1.0]  # capped at beat_max_interval (1 s)
    messages = [r.getMessage() for r in caplog.records]
    assert sum("Redis unreachable" in m for m in messages) == 1
    assert sum("Redis is back" in m for m in messages) == 1
    assert after <= 1.0 and scheduler.lock is not None
