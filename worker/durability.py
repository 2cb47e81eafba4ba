"""Can the Redis under this system lose jobs? Checked once as each worker starts.

A Redis that persists nothing empties on a restart, and every job record, queued Celery message and the beat
schedule go with it; one whose eviction policy is not ``noeviction`` drops keys under memory pressure (job
records, and the ``_kombu.binding.*`` keys without which Celery drops messages silently). Neither shows until
it happens, so a worker looks first: with ``INFO persistence`` and ``INFO memory``, which managed Redis
services answer, and with ``CONFIG GET save`` only to settle what INFO cannot say (whether RDB snapshots are
configured), which those services often refuse. It warns loudly when something is wrong, refuses to start when
``AJ_REQUIRE_DURABLE_REDIS`` is true, and when the server will not say, warns once and goes on.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import redis
from celery import bootsteps
from kombu.utils.url import maybe_sanitize_url

from worker.connections import redis_client
from worker.settings import ConfigurationError, Settings, get_settings

log = logging.getLogger(__name__)

NOT_PERSISTED = (
    "it persists nothing (AOF is off and so are RDB snapshots): a restart empties it, and every job record, "
    'queued message and the beat schedule with it. Set "appendonly yes" (with "appendfsync everysec"), or at '
    'least RDB save points such as "save 60 1000".'
)
EVICTS = (
    "its maxmemory-policy is {policy}, so under memory pressure it evicts keys: job records, and the "
    '_kombu.binding.* keys without which Celery drops messages. Set "maxmemory-policy noeviction".'
)


@dataclass(frozen=True)
class Assessment:
    """What a Redis server's INFO says about losing data."""

    problems: tuple[str, ...] = ()
    """What is wrong, each saying what to set."""
    unknown: tuple[str, ...] = ()
    """What the server would not say."""


def assess(
    persistence: Mapping[str, Any] | None, memory: Mapping[str, Any] | None, save: str | None = None
) -> Assessment:
    """Judge a server from its ``INFO persistence`` and ``INFO memory`` (None when they failed) and, when
    ``CONFIG GET save`` was allowed, its save points (``""`` when none)."""
    problems: list[str] = []
    unknown: list[str] = []
    if persistence is None:
        unknown.append("whether it persists anything (INFO persistence failed)")
    elif "aof_enabled" not in persistence:
        unknown.append("whether it persists anything (INFO persistence has no aof_enabled)")
    elif str(persistence["aof_enabled"]) != "1":
        snapshots = _snapshots(persistence, save)
        if snapshots is None:
            unknown.append(
                "whether it takes RDB snapshots (AOF is off, CONFIG GET save was refused, and it has taken "
                "none since it started)"
            )
        elif not snapshots:
            problems.append(NOT_PERSISTED)
    policy = memory.get("maxmemory_policy") if memory is not None else None
    if policy is None:
        failed = "failed" if memory is None else "has no maxmemory_policy"
        unknown.append(f"its maxmemory-policy (INFO memory {failed})")
    elif str(policy) != "noeviction":
        problems.append(EVICTS.format(policy=policy))
    return Assessment(tuple(problems), tuple(unknown))


def _snapshots(persistence: Mapping[str, Any], save: str | None) -> bool | None:
    """Whether the server takes RDB snapshots: its save points when known; else True when it has taken one
    since it started (INFO lists no save points), None when nothing tells."""
    if save is not None:
        return bool(save.strip())
    saved = (
        int(persistence.get("rdb_saves", 0)) > 0 or int(persistence.get("rdb_last_bgsave_time_sec", -1)) >= 0
    )
    return True if saved else None


LOADING_WAIT_S = 120.0
"""Longest a starting worker waits for a Redis that is still loading its data (after a restart, while it
replays its append-only file it reports AOF off), before it judges the server as it stands."""


def read_server(
    client: redis.Redis, loading_wait_s: float = LOADING_WAIT_S
) -> tuple[dict[str, Any] | None, dict[str, Any] | None, str | None]:
    """``INFO persistence``, ``INFO memory`` and the ``save`` setting of a server; None for each refused.

    A server still loading its data (``loading:1``) reports ``aof_enabled:0`` until it is done, so it is
    read again, once a second, until it has loaded (or ``loading_wait_s`` passed)."""
    persistence = _info(client, "persistence")
    deadline = time.monotonic() + loading_wait_s
    while persistence and str(persistence.get("loading")) == "1" and time.monotonic() < deadline:
        time.sleep(1.0)
        persistence = _info(client, "persistence")
    memory = _info(client, "memory")
    try:
        reply: Any = client.config_get("save")
    except redis.RedisError:
        return persistence, memory, None  # managed services often block CONFIG: INFO has to do
    value = reply.get("save", reply.get(b"save")) if isinstance(reply, dict) else None
    return persistence, memory, value.decode() if isinstance(value, bytes) else value


def _info(client: redis.Redis, section: str) -> dict[str, Any] | None:
    try:
        return dict(client.info(section))
    except redis.RedisError as exc:
        log.debug("INFO %s failed: %s", section, exc)
        return None


def report(where: str, found: Assessment, required: bool) -> None:
    """Log what ``found`` says about the Redis at ``where``; refuse to start (`ConfigurationError`) when
    something is wrong and ``required``."""
    if found.unknown:
        log.warning(
            "Redis at %s did not say %s; going on as if it were set up to keep its data.",
            where, " nor ".join(found.unknown),
        )  # fmt: skip
    if not found.problems:
        return
    lines = [f"Redis at {where} can lose jobs:", *(f"  - {p}" for p in found.problems)]
    if required:
        message = "\n".join([*lines, "AJ_REQUIRE_DURABLE_REDIS is true: this worker refuses to start."])
        log.critical(message)
        raise ConfigurationError(message)
    log.warning(
        "\n".join([*lines, "The worker starts anyway; set AJ_REQUIRE_DURABLE_REDIS=true to refuse to start."])
    )


def redis_urls(s: Settings) -> dict[str, str]:
    """Each Redis a worker uses, by URL, with what it holds."""
    urls = {s.redis_url: "the job store"}
    if s.broker_is_redis:
        urls[s.broker] = "the job store and the broker" if s.broker == s.redis_url else "the broker"
    return urls


def check(s: Settings, required: bool) -> None:
    """Check each Redis of ``s`` once (see the module's docstring)."""
    for url, holds in redis_urls(s).items():
        client = redis_client(s, url, socket_timeout=5)
        try:
            found = assess(*read_server(client))
        finally:
            client.close()
        report(f"{maybe_sanitize_url(url)} ({holds})", found, required)


class DurabilityCheck(bootsteps.Step):
    """Checks the worker's Redis servers as the worker is built, after logging is set up and before any
    process forks or any message is consumed."""

    label = "Durability check"

    def create(self, parent: Any) -> None:
        """Run the check; a `ConfigurationError` here stops the worker."""
        settings = get_settings()
        check(settings, settings.require_durable_redis)
