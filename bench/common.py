"""What every scenario shares: the emulator process, pinning, machine facts, percentiles, CPU/RSS sampling,
progress lines and the results files."""

from __future__ import annotations

import contextlib
import json
import os
import platform
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

import psutil

from emulator.admin_client import EmulatorAdmin

ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = ROOT / "bench" / "results"
API_KEY = "sk-bench"
EMULATOR_CORE = 0
"""The emulator gets this core to itself; everything else the bench starts runs on the other one."""
PACKAGES = ("celery", "kombu", "redis", "openai", "aiohttp", "httpx2", "uvicorn", "starlette", "orjson")


SHARING = {"cores": False}
"""``share_cores()`` sets it: the contender may use every core, the emulator's too."""


def share_cores() -> None:
    """Let the contender use every core from now on (the emulator stays pinned to `EMULATOR_CORE`, which
    it then shares): for scenarios where the emulator needs a fraction of its core and the contender's
    start rate is what is measured. Each scenario that does so says it in its results."""
    SHARING["cores"] = True


def contender_cores() -> set[int]:
    """The cores left for the contender once the emulator has its own (all of them on a one-core box, or
    after `share_cores`)."""
    cores = set(range(os.cpu_count() or 1)) if SHARING["cores"] else set(os.sched_getaffinity(0))
    return cores if SHARING["cores"] else (cores - {EMULATOR_CORE}) or cores


def pin_to(cores: set[int]) -> Callable[[], None]:
    """A ``preexec_fn`` that pins the child to ``cores``."""
    return lambda: os.sched_setaffinity(0, cores)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def clean_env(**extra: str) -> dict[str, str]:
    """This environment without any ``AJ_``/``OPENAI_`` settings, plus ``extra``."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(("AJ_", "OPENAI_"))}
    return {**base, "PYTHONPATH": str(ROOT), **extra}


@contextlib.contextmanager
def emulator(profile: dict[str, Any]) -> Iterator[tuple[str, EmulatorAdmin]]:
    """A fresh ``python -m emulator`` process with ``profile``, pinned to `EMULATOR_CORE`;
    yields its ``/v1`` URL and an admin client, and stops it on exit."""
    port = free_port()
    env = clean_env(AJ_EMULATOR_PROFILE=json.dumps(profile))
    cmd = [sys.executable, "-m", "emulator", "--port", str(port), "--api-key", API_KEY]
    cores = {EMULATOR_CORE} & set(os.sched_getaffinity(0)) or set(os.sched_getaffinity(0))
    proc = subprocess.Popen(cmd, env=env, cwd=ROOT, preexec_fn=pin_to(cores), stdout=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}/v1"
    admin = EmulatorAdmin(base, timeout=60)
    try:
        deadline = time.monotonic() + 30
        while True:
            with contextlib.suppress(OSError):
                if admin.health():
                    break
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the emulator did not start")
            time.sleep(0.1)
        yield base, admin
    finally:
        stop(proc)


def stop(proc: subprocess.Popen[Any], timeout: float = 20) -> None:
    """Terminate a child (warm shutdown), killing it when it does not go."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def percentiles(values: Sequence[float], points: Sequence[int] = (50, 95, 99)) -> dict[str, float | None]:
    """Nearest-rank percentiles of ``values`` (None when there are none), keyed ``p50`` etc."""
    ordered = sorted(values)
    if not ordered:
        return {f"p{p}": None for p in points}
    last = len(ordered) - 1
    return {f"p{p}": round(ordered[min(last, round(p / 100 * last))], 6) for p in points}


class TreeSampler:
    """CPU seconds and peak RSS of a process and all its descendants, sampled in a background thread.

    CPU of a child that exits between samples is kept from its last sample (pool processes live for the
    whole run, so little is lost); RSS peak is the largest sum over the tree at one sample.
    """

    def __init__(self, pid: int, every: float = 0.5):
        self.root = psutil.Process(pid)
        self.every = every
        self._cpu: dict[int, float] = {}
        self._start: dict[int, float] = {}
        self.peak_rss = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="bench-sampler", daemon=True)

    def __enter__(self) -> TreeSampler:
        self._sample()
        self._start = dict(self._cpu)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()

    @property
    def cpu_s(self) -> float:
        """CPU seconds (user + system) the tree used since the sampler started."""
        return sum(cpu - self._start.get(pid, 0.0) for pid, cpu in self._cpu.items())

    def _loop(self) -> None:
        while not self._stop.wait(self.every):
            self._sample()

    def _sample(self) -> None:
        with contextlib.suppress(psutil.Error):
            procs = [self.root, *self.root.children(recursive=True)]
            rss = 0
            for proc in procs:
                with contextlib.suppress(psutil.Error):
                    times = proc.cpu_times()
                    self._cpu[proc.pid] = times.user + times.system
                    rss += proc.memory_info().rss
            self.peak_rss = max(self.peak_rss, rss)


class Progress:
    """A line on stderr every ``every`` seconds: what runs, how far it is, for how long."""

    def __init__(self, label: str, total: int, every: float = 5.0):
        self.label = label
        self.total = total
        self.every = every
        self.began = time.monotonic()
        self._last = 0.0

    def update(self, done: int, note: str = "", force: bool = False) -> None:
        """Print the line when ``every`` seconds passed since the last one (or when forced)."""
        now = time.monotonic()
        if force or now - self._last >= self.every:
            self._last = now
            extra = f" {note}" if note else ""
            print(
                f"[bench] {self.label}: {done:,}/{self.total:,} done, {now - self.began:5.1f} s{extra}",
                file=sys.stderr,
                flush=True,
            )


def say(message: str) -> None:
    """One progress line on stderr."""
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def machine_facts() -> dict[str, Any]:
    """Cores, CPU, Python, platform and the versions of the packages that decide the figures."""
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "missing"
    return {
        "cores": os.cpu_count(),
        "emulator_core": EMULATOR_CORE,
        "contender_cores": sorted(contender_cores()),
        "cpu": _cpu_model(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "packages": versions,
        "load_avg_at_start": [round(x, 2) for x in os.getloadavg()],
    }


def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def write_result(out: Path, name: str, data: dict[str, Any]) -> Path:
    """Write ``out/<name>.json`` with ``data``, the machine's facts and the time of measurement."""
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{name}.json"
    body = {
        **data,
        "machine": machine_facts(),
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    path.write_text(json.dumps(body, indent=1) + "\n")
    return path
