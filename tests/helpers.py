"""Shared test helpers: the fast emulator profile and a handle on a worker process."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

from emulator.profile import Distribution, Profile

ROOT = Path(__file__).resolve().parent.parent
"""The repository's root (the workers' working directory)."""

OPENAPI = ROOT / "vendor" / "openai-openapi" / "openapi.json"
"""The OpenAI API contract, vendored with its source and licence (refreshed by scripts/refresh_openapi.py)."""

FAST_PROFILE = Profile(
    seed=7,
    run_duration=Distribution(kind="uniform", min=0.3, max=0.8),
    response_duration=Distribution(kind="uniform", min=0.3, max=0.8),
    poll_after_ms=100,
)


class WorkerProcess:
    """A real ``celery -A worker.app worker`` in its own process."""

    def __init__(self, proc: subprocess.Popen[bytes], log: Path):
        self.proc = proc
        self.log = log

    def wait_ready(self, timeout: float = 30) -> None:
        """Block until the worker says it is ready."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if "ready." in self.log.read_text(errors="replace"):
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.1)
        output = self.log.with_suffix(".out")
        text = self.log.read_text(errors="replace") + (
            output.read_text(errors="replace") if output.exists() else ""
        )
        raise RuntimeError(f"worker did not start:\n{text[-3000:]}")

    def kill(self) -> None:
        """SIGKILL the worker and its pool processes at once, as a crashed host would."""
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        """Stop the worker if it still runs."""
        if self.proc.poll() is None:
            self.proc.terminate()  # warm shutdown: the main process stops its pool itself
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.kill()
