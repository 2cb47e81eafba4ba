"""Every Redis connection the system makes, built from the settings in one place.

`AJ_REDIS_URL` names one Redis (``redis://``, ``rediss://`` for TLS, ``unix://``) or a Sentinel group
(``sentinel://HOST:PORT/DB``, one per sentinel joined by ``;``, kombu's form, with
`AJ_REDIS_SENTINEL_MASTER` naming the group). Whatever it names, every client goes through this module:

- `redis_options` and `tls_options` are the redis-py keyword arguments (timeouts, TLS files, how the
  server's certificate is checked); `sentinel_options` those of the connections to the sentinels;
- `redis_client` and `async_redis_client` build a redis-py client (sync, asyncio) on them: the store, the
  durability check, the quarantine, the poll loop, the webhook receiver, producers and the exporter;
- the broker (`worker.broker.broker_config`), beat (`worker.beat.beat_config`) and Flower, which build their
  own clients inside kombu, redbeat and Flower, are handed the same options in the forms those take.

With Sentinel a client asks the sentinels where the primary is at each new connection, so after a failover
the next command that fails on the old primary's connection is retried on the new one.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

import redis
import redis.asyncio as aioredis
from redis._parsers.base import BaseParser
from redis.asyncio.sentinel import Sentinel as AsyncSentinel
from redis.sentinel import Sentinel

from worker.settings import Settings, get_settings
from worker.store import Store

SOCKET_TIMEOUT_S = 30
"""Seconds a command may wait for its reply before the connection counts as broken (BLMOVE waits shorter)."""
CONNECT_TIMEOUT_S = 5
"""Seconds a connection (the TCP and TLS handshakes) may take."""
HEALTH_CHECK_S = 15
"""An idle pooled connection is PINGed before it is used again after this many seconds."""
SENTINEL_PORT = 26379
"""A sentinel's port when its URL names none."""


class NoReplicasError(redis.ConnectionError):
    """The primary refuses writes for now: fewer replicas acknowledge it than ``min-replicas-to-write`` asks
    (just after a failover, before a replica follows the new primary; or a primary cut off from its
    replicas). A Redis that cannot write is, for every caller, a Redis away for a moment."""


# Registered in redis-py's table of error replies (every parser, sync and asyncio, reads it), so every retry
# path that rides out a Redis restart rides this out too: redis-py's own retry, kombu's reconnect (a
# ResponseError there ends a worker: "Unrecoverable error"), tasks' autoretry, beat's outage handling. Redis
# 7 replies NOREPLICAS from inside a script as well; 6.2 wraps it in a script error, which stays a
# ResponseError (a task that meets it is re-driven by the watchdog instead of retried).
BaseParser.EXCEPTION_CLASSES.setdefault("NOREPLICAS", NoReplicasError)


@dataclass(frozen=True)
class SentinelGroup:
    """A ``sentinel://`` URL read: where the sentinels are, and what to ask the primary for."""

    sentinels: list[tuple[str, int]]
    db: int
    username: str | None
    password: str | None


def is_sentinel(url: str) -> bool:
    """Whether ``url`` names a Sentinel group rather than one server."""
    return url.startswith("sentinel://")


def sentinel_group(url: str) -> SentinelGroup:
    """``sentinel://[USER:PASSWORD@]HOST:PORT/DB;sentinel://...`` read; the first part that names them gives
    the primary's credentials and database."""
    parts = [urlsplit(part) for part in url.split(";") if part]
    db, username, password = 0, None, None
    for part in parts:
        if part.path.strip("/") and not db:
            db = int(part.path.strip("/"))
        if part.password and password is None:
            username = unquote(part.username) if part.username else None
            password = unquote(part.password)
    sentinels = [(str(part.hostname), part.port or SENTINEL_PORT) for part in parts]
    return SentinelGroup(sentinels, db, username, password)


def uses_tls(s: Settings, url: str | None = None) -> bool:
    """Whether connections to the Redis at ``url`` (the store's when None) speak TLS: a ``rediss://`` URL,
    or `AJ_REDIS_TLS` with any URL but a local socket's."""
    url = url or s.redis_url
    return url.startswith("rediss://") or (s.redis_tls and not url.startswith("unix://"))


def tls_options(s: Settings) -> dict[str, Any]:
    """redis-py's TLS keyword arguments from the settings (the ``ssl_*`` ones, without ``ssl`` itself):
    the CA to check the server's certificate against, the client certificate, and how strictly to check."""
    options: dict[str, Any] = {
        "ssl_cert_reqs": s.redis_tls_verify,
        "ssl_check_hostname": s.redis_tls_verify == "required",
    }
    if s.redis_tls_ca_file:
        options["ssl_ca_certs"] = s.redis_tls_ca_file
    if s.redis_tls_cert_file:
        options["ssl_certfile"] = s.redis_tls_cert_file
        options["ssl_keyfile"] = s.redis_tls_key_file
    return options


def redis_options(s: Settings, url: str | None = None, **overrides: Any) -> dict[str, Any]:
    """The keyword arguments of a client of the Redis at ``url`` (the store's when None): bounded
    timeouts, health checks, and the TLS options when it speaks TLS (the URL's scheme, or ``ssl=True``
    for a Sentinel group's primary, switches TLS itself on); ``overrides`` win."""
    options: dict[str, Any] = {
        "socket_timeout": SOCKET_TIMEOUT_S,
        "socket_connect_timeout": CONNECT_TIMEOUT_S,
        "health_check_interval": HEALTH_CHECK_S,
    }
    if uses_tls(s, url):
        options.update(tls_options(s))
    return {**options, **overrides}


def sentinel_options(s: Settings) -> dict[str, Any]:
    """The keyword arguments of the connections to the sentinels themselves: short timeouts (a sentinel
    that does not answer is passed over), their password, TLS as for the primary."""
    options: dict[str, Any] = {
        "socket_timeout": CONNECT_TIMEOUT_S,
        "socket_connect_timeout": CONNECT_TIMEOUT_S,
    }
    if s.redis_sentinel_password is not None:
        options["password"] = s.redis_sentinel_password.get_secret_value()
    if s.redis_tls:
        options.update(ssl=True, **tls_options(s))
    return options


def direct_url(s: Settings, url: str) -> str:
    """``url`` of one server as clients dial it: with `AJ_REDIS_TLS`, a ``redis://`` URL as ``rediss://``."""
    return "rediss://" + url.removeprefix("redis://") if s.redis_tls and url.startswith("redis://") else url


class SentinelPrimary(redis.Redis):
    """A client of a Sentinel group's primary, which closes its connections to the sentinels with its own."""

    manager: Sentinel | None = None
    """The Sentinel client that found the primary."""

    def close(self) -> None:
        """Close the primary's connections and the sentinels'."""
        super().close()
        if self.manager is not None:
            self.manager.close()


class AsyncSentinelPrimary(aioredis.Redis):
    """The asyncio twin of `SentinelPrimary`."""

    manager: AsyncSentinel | None = None
    """The Sentinel client that found the primary."""

    async def aclose(self, close_connection_pool: bool | None = None) -> None:
        """Close the primary's connections and the sentinels'."""
        await super().aclose(close_connection_pool)
        if self.manager is not None:
            await self.manager.aclose()


def redis_client(s: Settings, url: str | None = None, **overrides: Any) -> redis.Redis:
    """A client of the Redis at ``url`` (the store's when None), a Sentinel group's primary included."""
    url = url or s.redis_url
    options = redis_options(s, url, **overrides)
    if not is_sentinel(url):
        return redis.Redis.from_url(direct_url(s, url), **options)
    group = sentinel_group(url)
    if uses_tls(s, url):
        options["ssl"] = True  # the Sentinel pool's switch to TLS connections
    sentinel = Sentinel(  # type: ignore[no-untyped-call]
        group.sentinels, sentinel_kwargs=sentinel_options(s), **options
    )
    client: SentinelPrimary = sentinel.master_for(  # type: ignore[no-untyped-call]
        str(s.redis_sentinel_master),
        redis_class=SentinelPrimary,
        db=group.db,
        username=group.username,
        password=group.password,
    )
    client.manager = sentinel
    return client


def async_redis_client(s: Settings, url: str | None = None, **overrides: Any) -> aioredis.Redis:
    """The asyncio twin of `redis_client` (the poll loop, the webhook receiver)."""
    url = url or s.redis_url
    options = redis_options(s, url, **overrides)
    if not is_sentinel(url):
        return aioredis.Redis.from_url(direct_url(s, url), **options)
    group = sentinel_group(url)
    if uses_tls(s, url):
        options["ssl"] = True
    sentinel = AsyncSentinel(  # type: ignore[no-untyped-call]
        group.sentinels, sentinel_kwargs=sentinel_options(s), **options
    )
    client: AsyncSentinelPrimary = sentinel.master_for(
        str(s.redis_sentinel_master),
        redis_class=AsyncSentinelPrimary,
        db=group.db,
        username=group.username,
        password=group.password,
    )
    client.manager = sentinel
    return client


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
