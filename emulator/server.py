"""Running the emulator: blocking `serve`, and `running_emulator` in a background thread for tests."""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import uvicorn

from emulator.admin_client import EmulatorAdmin
from emulator.app import create_app
from emulator.profile import Profile


class _QuietDrops(logging.Filter):
    """Dropped connections are injected on purpose; uvicorn's complaint about them is noise."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "without completing response" not in record.getMessage()


def _config(host: str, port: int, profile: Profile, api_key: str | None, access_log: bool) -> uvicorn.Config:
    logging.getLogger("uvicorn.error").addFilter(_QuietDrops())
    return uvicorn.Config(
        create_app(profile, api_key),
        host=host,
        port=port,
        loop="uvloop",
        http="httptools",
        access_log=access_log,
        log_level="warning",
        timeout_keep_alive=30,
        backlog=4096,
    )


def serve(host: str, port: int, profile: Profile, api_key: str | None) -> None:
    """Serve the emulator until interrupted (used by `ajobs emulator` and `python -m emulator`)."""
    uvicorn.Server(_config(host, port, profile, api_key, access_log=False)).run()


class EmulatorHandle(EmulatorAdmin):
    """A running emulator: its `/v1` base URL, its API key, and the admin helpers."""

    def __init__(self, base_url: str, api_key: str | None) -> None:
        super().__init__(base_url)
        self.base_url = base_url
        self.api_key = api_key


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextmanager
def running_emulator(
    profile: Profile | None = None, api_key: str | None = "sk-test", port: int = 0
) -> Iterator[EmulatorHandle]:
    """Run the emulator on 127.0.0.1 in a background thread of this process until the block ends."""
    port = port or _free_port()
    server = uvicorn.Server(_config("127.0.0.1", port, profile or Profile(), api_key, access_log=False))
    server.install_signal_handlers = lambda: None  # type: ignore[method-assign]
    thread = threading.Thread(target=server.run, name=f"emulator-{port}", daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError(f"the emulator did not start on port {port}")
        time.sleep(0.01)
    try:
        yield EmulatorHandle(f"http://127.0.0.1:{port}/v1", api_key)
    finally:
        server.should_exit = True
        thread.join(timeout=10)
