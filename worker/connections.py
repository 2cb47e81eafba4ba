"""Process-wide connections: one Redis pool and one store per process, built from the settings."""

from __future__ import annotations

import functools

import redis

from worker.settings import Settings, get_settings
from worker.store import Store


def redis_client(settings: Settings) -> redis.Redis:
    """A Redis client for ``settings.redis_url`` with bounded socket timeouts and health checks."""
    return redis.Redis.from_url(
        settings.redis_url, socket_timeout=30, socket_connect_timeout=5, health_check_interval=15
    )


def make_store(settings: Settings) -> Store:
    """The store on a fresh Redis client for ``settings``."""
    return Store.on(
        redis_client(settings),
        result_ttl=settings.result_ttl,
        idempotency_ttl=settings.idempotency_ttl,
        events_maxlen=settings.events_maxlen,
    )


@functools.cache
def store() -> Store:
    """This process's store (redis-py reopens its pool after a fork by itself)."""
    return make_store(get_settings())
