"""The Redis broker: a malformed message on a queue list is set aside, never fatal to a worker.

kombu's Redis transport pops each message with BRPOP and parses it on the spot, in the worker's event loop
(``Channel._brpop_read``): ``loads`` the JSON, then ``Message(...)`` reads ``properties`` and decodes the
base64 body, then ``QoS.append`` records its ``delivery_info`` in the unacked index. Celery's consumer then
reads the task protocol (``headers["id"]``, a body of ``[args, kwargs, embed]``). An exception at any of these
steps escapes the event loop: ``LPUSH runs 'not json {'`` ends a worker with "Unrecoverable error", a task
message without an id is restored and redelivered in a tight loop for ever, and each worker that pops such a
message goes the same way. Here each is moved aside instead: pushed onto a capped list
(`worker.store.quarantine`), logged once, counted by the exporter, and the worker
consumes on.

One guard per layer:

- `Channel` screens each BRPOP (and RPOP) reply as redis-py hands it over, before kombu parses it: the one
  place that sees the raw bytes and the queue they came from. A malformed message is quarantined and the
  reply becomes "nothing arrived", which kombu already handles.
- `Consumer` wraps Celery's task handler: a message whose envelope is sound but whose task protocol Celery
  cannot read is quarantined and acknowledged.

Every Redis broker uses them (`broker_config`): ``redis://``, ``rediss://`` and Sentinel groups
(``sentinel://``, kombu's Sentinel transport under the same screening channel). A RabbitMQ broker keeps
kombu's and Celery's own classes, with publisher confirms on and, as an option, quorum queues.

`broker_config` is also where the broker's connection options come from: TLS (``broker_use_ssl``) and
Sentinel (``master_name``, ``sentinel_kwargs``) from the same settings, and through `worker.connections`,
as for every other Redis client of the system.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs, urlsplit

import redis
from celery.worker.consumer import Consumer as CeleryConsumer
from kombu import Connection
from kombu.transport import redis as kombu_redis
from kombu.transport.virtual import Channel as VirtualChannel
from kombu.utils.encoding import bytes_to_str
from kombu.utils.json import dumps, loads
from kombu.utils.url import parse_ssl_cert_reqs

from worker import connections
from worker.settings import Settings, get_settings
from worker.store import keys, quarantine

log = logging.getLogger(__name__)

PREVIEW_BYTES = 100
"""How much of a quarantined message its log line shows (the whole message is in the list)."""
TRANSPORTS = {
    "redis": "worker.broker:Transport",
    "rediss": "worker.broker:TlsTransport",
    "sentinel": "worker.broker:SentinelTransport",
}
"""The transport for each broker URL scheme this module takes over."""
CONSUMER = "worker.broker:Consumer"


def envelope_problem(raw: bytes) -> str | None:
    """What in ``raw`` would make kombu's Redis transport raise before Celery sees it, or None when nothing.

    It reads what the transport reads from an envelope: a JSON object (kombu's own ``loads``), its
    ``properties`` with a ``delivery_tag`` and a ``delivery_info`` naming the exchange and routing key (the
    unacked index records both), ``headers`` as an object, and a string ``body`` its ``body_encoding``
    decodes (kombu's codec, so what kombu accepts passes).
    """
    try:
        envelope = loads(bytes_to_str(raw))
    except Exception:  # kombu's loads: bad JSON, bytes that are not UTF-8, a bad ``__type__`` value
        return "not JSON"
    if not isinstance(envelope, dict):
        return "not a JSON object"
    properties = envelope.get("properties")
    if not isinstance(properties, dict):
        return "no properties object"
    tag = properties.get("delivery_tag")
    if isinstance(tag, bool) or not isinstance(tag, str | int | float):
        return "no delivery_tag"
    info = properties.get("delivery_info")
    if not isinstance(info, dict) or "exchange" not in info or "routing_key" not in info:
        return "no delivery_info with exchange and routing_key"
    if envelope.get("headers") is not None and not isinstance(envelope["headers"], dict):
        return "headers not an object"
    return _body_problem(envelope.get("body"), properties.get("body_encoding"))


def _body_problem(body: Any, encoding: Any) -> str | None:
    if body is None:
        return None
    if not isinstance(body, str):
        return "body not a string"
    if not body or not encoding:  # kombu decodes only a non-empty body with an encoding
        return None
    if not isinstance(encoding, str):
        return "body_encoding not a string"
    if encoding.lower() == "utf-8":
        return None
    codec = VirtualChannel.codecs.get(encoding)
    if codec is None:
        return f"unknown body_encoding {encoding[:40]!r}"
    try:
        codec.decode(body)
    except Exception:
        return f"body not valid {encoding}"
    return None


def preview(raw: bytes) -> str:
    """The start of ``raw`` for a log line, and its size when it is longer."""
    if len(raw) <= PREVIEW_BYTES:
        return repr(raw)
    return f"{raw[:PREVIEW_BYTES]!r}... ({len(raw)} bytes)"


class Quarantine:
    """Sets malformed broker messages aside in the store's quarantine list, logging one line each."""

    def __init__(self, client: redis.Redis) -> None:
        self.list = quarantine.Quarantine(client)

    def put(self, raw: bytes, queue: str, problem: str) -> None:
        """Keep ``raw`` (newest first, capped) and log one line naming the queue."""
        try:
            self.list.keep(raw)
        except redis.RedisError as exc:
            # It is off its queue already and pushing it back would only pop it again: this line is all that
            # is left of it.
            log.error(
                "dropped a malformed message from queue %r (%s), %s unreachable (%s): %s",
                queue, problem, keys.QUARANTINE, exc, preview(raw),
            )  # fmt: skip
            return
        log.warning(
            "set aside a malformed message from queue %r (%s) in %s: %s",
            queue, problem, keys.QUARANTINE, preview(raw),
        )  # fmt: skip


def store_url() -> str:
    """The store's Redis URL, from this process's settings."""
    return get_settings().redis_url


@functools.cache
def quarantine_at(url: str) -> Quarantine:
    """This process's quarantine on the Redis at ``url``, connected as every client is
    (`worker.connections`)."""
    return Quarantine(connections.redis_client(get_settings(), url, socket_timeout=10))


class QoS(kombu_redis.QoS):
    """kombu's Redis QoS, surviving a broker connection that is already gone when it acknowledges or gives
    messages back.

    When Redis goes away under a worker, Celery closes its connection; a task still running then finishes
    and acknowledges its message, or the closing channel tries to give its unacknowledged messages back,
    on a connection already torn down. kombu then fails with ``AttributeError`` (``'NoneType' object has no
    attribute 'client'`` or ``'hostname'``), which Celery does not count as a connection error, so the
    whole worker stopped ("Unrecoverable error", exit 0) instead of reconnecting. Those messages stay in
    kombu's unacked set and come back after the visibility timeout, like a killed worker's; the tasks are
    idempotent, so running one again is harmless.
    """

    def ack(self, delivery_tag: Any) -> None:
        self._unless_gone(super().ack, delivery_tag)

    def reject(self, delivery_tag: Any, requeue: bool = False) -> None:
        self._unless_gone(super().reject, delivery_tag, requeue)

    def restore_unacked(self, client: Any = None) -> Any:
        return self._unless_gone(super().restore_unacked, client)

    def _unless_gone(self, call: Callable[..., Any], *args: Any) -> Any:
        try:
            return call(*args)
        except AttributeError:
            if getattr(self.channel.connection, "client", None) is not None:
                raise
            log.warning(
                "the broker connection was gone before messages could be acknowledged or given back; "
                "they come back after the visibility timeout"
            )
            return None


class Channel(kombu_redis.Channel):
    """kombu's Redis channel, screening each popped message before kombu parses it."""

    QoS = QoS

    def _create_client(self, asynchronous: bool = False) -> Any:
        client = super()._create_client(asynchronous)  # type: ignore[misc]
        # kombu parses these replies right after redis-py's callback for them; None reads as "nothing
        # arrived" (a BRPOP timeout, an empty RPOP), which it handles already.
        client.set_response_callback("BRPOP", self._screen_brpop)
        client.set_response_callback("RPOP", self._screen_rpop)
        return client

    def _screen_brpop(self, response: Any, **_: Any) -> Any:
        if not response:
            return None
        key, raw = response
        queue = bytes_to_str(key).rsplit(self.sep, 1)[0]  # a priority queue's key is "name<sep><priority>"
        return None if self._set_aside(raw, queue) else tuple(response)

    def _screen_rpop(self, response: Any, **_: Any) -> Any:
        if isinstance(response, bytes) and self._set_aside(response, "(basic_get)"):
            return None
        return response

    def _set_aside(self, raw: bytes, queue: str) -> bool:
        problem = envelope_problem(raw)
        if problem is None:
            return False
        self.quarantine().put(raw, queue, problem)
        return True

    def quarantine(self) -> Quarantine:
        """Where this channel sets malformed messages aside: the store's Redis, beside every other key.
        (Read from the settings, not passed as a transport option: those show in Flower, password and all.)"""
        return quarantine_at(store_url())


class Transport(kombu_redis.Transport):
    """kombu's Redis transport with the screening `Channel`."""

    Channel = Channel


class TlsTransport(Transport):
    """The same for ``rediss://`` brokers, named apart so that the connection still shows as rediss://."""


class SentinelChannel(Channel, kombu_redis.SentinelChannel):
    """kombu's Sentinel channel (the primary found through the sentinels), screening as `Channel` does."""


class SentinelTransport(kombu_redis.SentinelTransport):
    """kombu's Sentinel transport with the screening `SentinelChannel`."""

    Channel = SentinelChannel


# kombu shows a connection under its transport's name (as a URL's scheme in the worker's banner, in Flower);
# this table is how it shows pyamqp's as amqp://. Flower picks its broker client by that scheme.
Connection.resolve_aliases.update({path: scheme for scheme, path in TRANSPORTS.items()})


class Consumer(CeleryConsumer):
    """Celery's consumer, setting aside a task message it cannot read instead of dying on it.

    Celery handles a body it cannot decode, an unknown task name and a bad ETA itself (logs, drops); what it
    does not catch (a message without a task id, a body that is not ``[args, kwargs, embed]``) escapes its
    handler, and either ends the worker or, for a ``KeyError`` kombu's Redis transport takes for a lost
    connection, reconnects and redelivers the message for ever.
    """

    # Set by Celery's consumer from the broker connection (absent from its type stubs).
    connection_errors: tuple[type[BaseException], ...]
    channel_errors: tuple[type[BaseException], ...]

    def create_task_handler(self, *args: Any, **kwargs: Any) -> Callable[..., Any]:
        """Celery's task handler, guarded: a message it raises on is quarantined and acknowledged."""
        handle = super().create_task_handler(*args, **kwargs)
        # Trouble with the broker itself still propagates, so Celery reconnects. kombu's Redis transport lists
        # KeyError among connection errors (a stale socket after a restart); from a handler it is a missing
        # field.
        broker_errors = tuple(e for e in (*self.connection_errors, *self.channel_errors) if e is not KeyError)

        def on_task_received(message: Any) -> Any:
            try:
                return handle(message)
            except broker_errors:
                raise
            except Exception as exc:
                self._set_aside(message, exc)
                return None

        return on_task_received

    def _set_aside(self, message: Any, exc: Exception) -> None:
        raw = getattr(message, "_raw", None)  # the envelope kombu's virtual transports parsed
        data = dumps(raw).encode() if raw is not None else bytes(message.body or b"")
        queue = str((message.delivery_info or {}).get("routing_key", "?"))
        problem = f"{type(exc).__name__}: {str(exc)[:200]}"
        channel = message.channel
        where = channel.quarantine() if isinstance(channel, Channel) else None
        if where is not None:
            where.put(data, queue, problem)
        else:
            log.error("dropped a task message Celery cannot read from queue %r (%s)", queue, problem)
        if not message.acknowledged:
            message.ack_log_error(log, self.connection_errors)


REDIS_TRANSPORT_OPTIONS: dict[str, Any] = {
    "socket_timeout": connections.SOCKET_TIMEOUT_S,
    "socket_connect_timeout": connections.CONNECT_TIMEOUT_S,
    "health_check_interval": connections.HEALTH_CHECK_S,
    # Sweep for a dead worker's unacked messages every 5 s (kombu's default is ~100 s).
    "unacked_restore_interval": 5,
    "unacked_restore_throttle": 1,
    # Serve a worker's queues in the order it lists them: runs.active before runs.
    "queue_order_strategy": "priority",
}
"""kombu's Redis transport options (with the visibility timeout from the settings)."""
AMQP_TRANSPORT_OPTIONS: dict[str, Any] = {
    # Publisher confirms: a publish returns once RabbitMQ has the message (on a quorum queue, once a
    # majority of its replicas do), so a send that returned is never lost with a broker node.
    "confirm_publish": True,
    "connect_timeout": connections.CONNECT_TIMEOUT_S,
}
"""kombu's py-amqp transport options."""


def broker_config(s: Settings) -> dict[str, Any]:
    """What ``app.conf`` needs about the broker: its URL and transport options, and

    - for a Redis broker (``redis://``, ``rediss://``, ``sentinel://``): this module's transport and consumer
      (malformed messages set aside in the store's quarantine), the visibility timeout, TLS
      (``broker_use_ssl``, from the same settings as every Redis client) and Sentinel's group;
    - for RabbitMQ: publisher confirms, and kombu's and Celery's own classes.
    """
    if not s.broker_is_redis:
        return {"broker_url": s.broker, "broker_transport_options": dict(AMQP_TRANSPORT_OPTIONS)}
    options: dict[str, Any] = {
        **REDIS_TRANSPORT_OPTIONS,
        "visibility_timeout": s.visibility_timeout,
    }
    scheme = urlsplit(s.broker).scheme
    url = s.broker
    if scheme == "sentinel":
        options["master_name"] = s.redis_sentinel_master
        options["sentinel_kwargs"] = connections.sentinel_options(s)
    elif scheme in TRANSPORTS:
        url = connections.direct_url(s, s.broker)  # AJ_REDIS_TLS on a redis:// URL: rediss://
        scheme = urlsplit(url).scheme
    config: dict[str, Any] = {"broker_url": url, "broker_transport_options": options}
    if scheme in TRANSPORTS:
        config.update(broker_transport=TRANSPORTS[scheme], worker_consumer=CONSUMER)
    if connections.uses_tls(s, url):
        config["broker_use_ssl"] = broker_tls(s, url)
    return config


def broker_tls(s: Settings, url: str) -> dict[str, Any]:
    """kombu's TLS options for the broker at ``url``: the settings' (`worker.connections.tls_options`), and
    over them any ``ssl_*`` parameter the URL's query names. Never kombu's own default for a ``rediss://``
    URL without such parameters, which checks no certificate at all (``CERT_NONE``)."""
    given = {
        name: parse_ssl_cert_reqs(values[-1]) if name == "ssl_cert_reqs" else values[-1]
        for name, values in parse_qs(urlsplit(url).query).items()
        if name.startswith("ssl_")
    }
    return {**connections.tls_options(s), **given}


def queue_arguments(s: Settings) -> dict[str, Any] | None:
    """The arguments each queue is declared with: ``x-queue-type: quorum`` on RabbitMQ when asked."""
    if s.broker_quorum_queues and not s.broker_is_redis:
        return {"x-queue-type": "quorum"}
    return None


def exchange_type(s: Settings) -> str:
    """The type of each queue's own exchange. ``direct``, except with quorum queues: Celery's native delayed
    delivery (how a countdown retry waits on RabbitMQ without a worker holding the message) needs ``topic``,
    which routes a message whose routing key is the queue's name exactly as ``direct`` does."""
    return "topic" if queue_arguments(s) else "direct"
