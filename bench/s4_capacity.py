"""S4 emulator capacity: run retrieves a second the emulator serves on one core (bench/emulator_capacity.py),
recorded in the same layout as the other scenarios, so the reader knows the emulator was not the limit."""

from __future__ import annotations

import asyncio
import multiprocessing
import time
from pathlib import Path
from typing import Any

from bench import emulator_capacity as cap
from bench.common import EMULATOR_CORE, contender_cores, free_port, say, stop, write_result
from emulator.admin_client import EmulatorAdmin

SIZES = {"tiny": (200, 1.0), "quick": (2000, 5.0), "full": (10_000, 10.0)}
"""Per mode: runs held in flight, seconds of load."""
CONCURRENCY = 64


def measure(runs: int, seconds: float) -> dict[str, Any]:
    """Hold ``runs`` in flight and retrieve them as fast as one load process on the other core can."""
    port = free_port()
    base = f"http://127.0.0.1:{port}/v1"
    server = cap.start_emulator(port, EMULATOR_CORE)
    try:
        admin = EmulatorAdmin(base)
        deadline = time.monotonic() + 30
        while True:
            try:
                if admin.health():
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        pairs = asyncio.run(cap.create_runs(base, runs))
        admin.reset_counters()
        ctx = multiprocessing.get_context("fork")
        queue: Any = ctx.Queue()
        load_core = min(contender_cores())
        loader = ctx.Process(
            target=cap._load_process, args=(base, pairs, seconds, CONCURRENCY, load_core, queue)
        )
        loader.start()
        part = queue.get()
        loader.join()
    finally:
        stop(server)
    return {
        "retrieves_per_s": round(part["retrieves"] / part["elapsed_s"], 1),
        "runs_in_flight": len(pairs),
        "seconds": seconds,
        "concurrency": CONCURRENCY,
        "load": part,
        "emulator": {"profile": cap.PROFILE, "core": EMULATOR_CORE, "load_core": load_core},
    }


def main(mode: str, out: Path, command: str) -> dict[str, Any]:
    """Run S4 for ``mode`` and write ``out/s4_emulator.json``."""
    say("S4 emulator capacity: starting")
    runs, seconds = SIZES[mode]
    figures = measure(runs, seconds)
    say(f"S4 emulator capacity: {figures['retrieves_per_s']:,} retrieves/s on one core")
    result = {"scenario": "s4_emulator", "mode": mode, "command": command, **figures}
    write_result(out, "s4_emulator", result)
    return result
