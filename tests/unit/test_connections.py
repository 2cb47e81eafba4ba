"""What each component is handed to reach Redis and the broker, from the settings alone (no server): TLS,
Sentinel and RabbitMQ options in the forms kombu, redbeat and Flower take."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest
from kombu.utils.url import parse_ssl_cert_reqs

from worker import broker
from worker.app import create_app
from worker.beat import redbeat_connection
from worker.connections import NoReplicasError, redis_options, sentinel_group, sentinel_options, tls_options
from worker.settings import Settings

SENTINELS = "sentinel://:pw@10.0.0.1:26379/2;sentinel://10.0.0.2:26380;sentinel://10.0.0.3"


@pytest.fixture
def pem(tmp_path: Path) -> str:
    """A readable file standing for a certificate (the settings check only that it can be read)."""
    path = tmp_path / "ca.pem"
    path.write_text("-----BEGIN CERTIFICATE-----\n")
    return str(path)


def test_a_rediss_broker_checks_the_server_even_without_ssl_parameters_in_its_url() -> None:
    # Given a rediss:// broker URL with no ssl_* query (kombu alone would use CERT_NONE then)
    app = create_app(Settings(redis_url="rediss://cache.example.com:6380/0"))
    # Then the broker is handed the settings' TLS options: the certificate and the host name checked
    assert app.conf.broker_use_ssl["ssl_cert_reqs"] == "required"
    assert app.conf.broker_use_ssl["ssl_check_hostname"] is True
    with app.connection_for_read() as conn:
        assert conn.ssl["ssl_cert_reqs"] == "required"


def test_the_url_s_own_ssl_parameters_win_over_the_settings(pem: str) -> None:
    s = Settings(redis_url="rediss://h:6380/0?ssl_cert_reqs=optional", redis_tls_ca_file=pem)
    given = broker.broker_config(s)["broker_use_ssl"]
    assert given["ssl_cert_reqs"] == parse_ssl_cert_reqs("optional") == ssl.CERT_OPTIONAL
    assert given["ssl_ca_certs"] == pem


def test_tls_options_follow_the_verification_mode(pem: str) -> None:
    for mode, hostname in (("required", True), ("optional", False), ("none", False)):
        s = Settings(redis_url="rediss://h:6380/0", redis_tls_ca_file=pem, redis_tls_verify=mode)
        assert tls_options(s) == {"ssl_cert_reqs": mode, "ssl_check_hostname": hostname, "ssl_ca_certs": pem}
    # and a plain redis:// URL gets no TLS option at all
    assert "ssl_cert_reqs" not in redis_options(Settings(redis_url="redis://h:6379/0"))


def test_a_sentinel_url_is_read_as_kombu_reads_it() -> None:
    group = sentinel_group(SENTINELS)
    assert group.sentinels == [("10.0.0.1", 26379), ("10.0.0.2", 26380), ("10.0.0.3", 26379)]
    assert (group.db, group.password) == (2, "pw")


def test_a_sentinel_broker_uses_the_screening_sentinel_transport_with_the_group(pem: str) -> None:
    # Given a Sentinel group with TLS and a password on the sentinels themselves
    s = Settings(
        redis_url=SENTINELS,
        redis_sentinel_master="assistant-jobs",
        redis_sentinel_password="spw",
        redis_tls=True,
        redis_tls_ca_file=pem,
    )
    app = create_app(s)
    options = app.conf.broker_transport_options
    # Then kombu gets its Sentinel transport (with the quarantine), the group, the sentinels' password and TLS
    assert app.conf.broker_transport == broker.TRANSPORTS["sentinel"]
    assert options["master_name"] == "assistant-jobs"
    assert options["sentinel_kwargs"] == sentinel_options(s)
    assert options["sentinel_kwargs"]["password"] == "spw" and options["sentinel_kwargs"]["ssl"] is True
    assert app.conf.broker_use_ssl["ssl_ca_certs"] == pem
    with app.connection_for_read() as conn:  # shown as sentinel:// (the banner, Flower's broker class)
        assert conn.as_uri().startswith("sentinel://")
    # and beat gets the group as redbeat takes one
    beat = redbeat_connection(s)
    assert beat["redbeat_redis_url"].startswith("redis-sentinel://")
    assert beat["redbeat_redis_options"]["sentinels"][1] == ("10.0.0.2", 26380)
    assert beat["redbeat_redis_options"]["service_name"] == "assistant-jobs"
    assert beat["redbeat_redis_use_ssl"]["ssl_ca_certs"] == pem


@pytest.mark.parametrize(
    ("quorum", "queue_type", "exchange"), [(False, None, "direct"), (True, "quorum", "topic")]
)
def test_a_rabbitmq_broker_confirms_publishes_and_declares_quorum_queues_when_asked(
    quorum: bool, queue_type: str | None, exchange: str
) -> None:
    app = create_app(Settings(broker_url="amqp://guest:guest@127.0.0.1:5672//", broker_quorum_queues=quorum))
    assert app.conf.broker_transport_options["confirm_publish"] is True
    assert "visibility_timeout" not in app.conf.broker_transport_options  # Redis's, not RabbitMQ's
    for queue in app.conf.task_queues:
        assert (queue.queue_arguments or {}).get("x-queue-type") == queue_type
        assert queue.exchange.type == exchange


def test_quorum_queues_on_a_redis_broker_change_nothing() -> None:
    app = create_app(Settings(broker_quorum_queues=True))
    assert all(not q.queue_arguments and q.exchange.type == "direct" for q in app.conf.task_queues)


def test_a_primary_that_refuses_writes_for_want_of_replicas_reads_as_a_connection_error() -> None:
    from redis._parsers.base import BaseParser

    error = BaseParser.parse_error("NOREPLICAS Not enough good replicas to write.")
    assert isinstance(error, NoReplicasError)
