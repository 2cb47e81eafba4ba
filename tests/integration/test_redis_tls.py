"""TLS to Redis: every connection the system makes speaks TLS with the settings' CA and client certificate,
and refuses a server its CA did not sign.

The server is Debian's redis-server on a TLS-only port asking clients for a certificate (``--tls-auth-clients
yes``), with certificates the test makes with openssl; skipped where that binary lacks TLS.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis
from helpers import WorkerProcess
from probes import PROBES, configure, forget_settings, store
from topologies import Certificates, make_certificates, tls_redis

from devkit.redis_server import RedisServer
from emulator.server import EmulatorHandle
from schemas.job import JobStatus
from worker import settings as settings_module
from worker.app import create_app
from worker.client import Jobs
from worker.settings import Settings

pytestmark = pytest.mark.timeout(180)


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    """A CA, the server's and a client's certificates, and a CA that signed neither."""
    return make_certificates(tmp_path_factory.mktemp("certs"))


@pytest.fixture(scope="module")
def server(certs: Certificates) -> Iterator[RedisServer]:
    """A TLS-only Redis that asks every client for a certificate."""
    with tls_redis(certs) as running:
        yield running


@pytest.fixture(autouse=True)
def fresh_settings() -> Iterator[None]:
    """Settings read again in each test, forgotten after it (the quarantine reads them as a worker would)."""
    yield
    forget_settings()


def tls_settings(
    monkeypatch: pytest.MonkeyPatch, server: RedisServer, certs: Certificates, **extra: str
) -> Settings:
    """Settings for ``server`` with the certificates' CA and client certificate (``extra`` over them)."""
    env = {"AJ_REDIS_URL": server.url, "OPENAI_API_KEY": "sk-test", **certs.settings_env(), **extra}
    return configure(monkeypatch, env)


@pytest.mark.parametrize("connection", PROBES)
def test_every_connection_reaches_a_tls_redis_with_the_settings_ca_and_client_certificate(
    connection: str, server: RedisServer, certs: Certificates, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a Redis on TLS only, asking for a client certificate, and settings naming its CA and a client's
    s = tls_settings(monkeypatch, server, certs)
    # When the component connects through the client it builds; Then it reaches Redis
    PROBES[connection](s)


@pytest.mark.parametrize("connection", PROBES)
def test_every_connection_refuses_a_server_its_ca_did_not_sign(
    connection: str,
    server: RedisServer,
    certs: Certificates,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Given settings whose CA is not the one that signed the server's certificate
    s = tls_settings(monkeypatch, server, certs, AJ_REDIS_TLS_CA_FILE=str(certs.wrong_ca))
    # When the component connects; Then the handshake fails: it never talks to an unverified server
    with pytest.raises(Exception) as caught:
        PROBES[connection](s)
    said = "".join(_chain(caught.value)) + caplog.text
    assert "certificate verify failed" in said, said


def _chain(exc: BaseException | None) -> list[str]:
    seen: list[str] = []
    while exc is not None and len(seen) < 10:
        seen.append(f"{type(exc).__name__}: {exc}")
        exc = exc.__cause__ or exc.__context__
    return seen


def test_verify_none_connects_to_any_server_and_a_client_without_certificate_is_refused(
    server: RedisServer, certs: Certificates, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given verification off, the wrong CA is no obstacle (encryption without authentication)
    s = tls_settings(
        monkeypatch, server, certs, AJ_REDIS_TLS_CA_FILE=str(certs.wrong_ca), AJ_REDIS_TLS_VERIFY="none"
    )
    store(s)
    # and a client that shows no certificate is turned away by the server (tls-auth-clients yes)
    bare = configure(monkeypatch, {"AJ_REDIS_URL": server.url, "AJ_REDIS_TLS_CA_FILE": str(certs.ca)})
    with pytest.raises(redis.ConnectionError):
        store(bare)


def test_a_worker_runs_a_job_end_to_end_on_a_tls_redis(
    server: RedisServer,
    certs: Certificates,
    worker: Callable[..., WorkerProcess],
    emulator: EmulatorHandle,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given a worker (Celery's consumer, its poll loop, its tasks) whose every connection is TLS
    env = {"AJ_REDIS_URL": server.url, "AJ_REQUIRE_DURABLE_REDIS": "true", **certs.settings_env()}
    redis.Redis.from_url(server.url, **certs.client_options()).flushall()
    worker(extra_env=env)
    # When a producer submits a run and a clean-up
    s = configure(monkeypatch, {**env, "OPENAI_API_KEY": "sk-test", "OPENAI_BASE_URL": emulator.base_url})
    jobs = Jobs(s, celery=create_app(s))
    run = jobs.submit({"kind": "run", "backend": "responses", "model": "gpt-4o",
                       "messages": [{"role": "user", "content": "Hello"}]})  # fmt: skip
    cleanup = jobs.submit({"kind": "cleanup", "targets": ["jobs"], "dry_run": True})
    # Then both complete, the run with its answer
    for ref in (run, cleanup):
        record = jobs.wait(ref.id, timeout=60)
        assert record.status == JobStatus.COMPLETED, record.error
    assert jobs.get(run.id).result["text"]


def test_tls_files_that_cannot_be_read_stop_start_up_naming_the_setting(tmp_path: Path) -> None:
    # Given a CA file that is not there; When the settings are read; Then start-up stops naming the variable
    with pytest.raises(settings_module.ValidationError) as caught:
        Settings(redis_url="rediss://127.0.0.1:6380/0", redis_tls_ca_file=str(tmp_path / "missing.pem"))
    assert "AJ_REDIS_TLS_CA_FILE" in settings_module.describe(caught.value)
