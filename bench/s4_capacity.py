"""S4 emulator capacity: run retrieves a second the emulator serves on one core (bench/emulator_capacity.py),
recorded in the same layout as the other scenarios, so the reader knows the emulator was not the limit."""

from __future__ import annotations

import asyncio
import multiprocessing
import time
from pathlib import Path
from typing import Any

import psutil

from bench import emulator_capacity as cap
from bench.common import EMULATOR_CORE, contender_cores, free_port, say, stop, write_result
from emulator.admin_client import EmulatorAdmin
from emulator.webhook_receiver import WebhookReceiver

SIZES = {"tiny": (200, 1.0), "quick": (2000, 5.0), "full": (10_000, 10.0)}
"""Per mode: runs held in flight, seconds of load."""
CONCURRENCY = 64
CREATE_STARTS = {"tiny": 200, "quick": 2000, "full": 10_000}
"""Per mode: background responses started (a conversation and a response each) to time the creates."""
DELIVERIES = {"tiny": 200, "quick": 2000, "full": 10_000}
"""Per mode: signed webhook deliveries timed."""


def measure(runs: int, seconds: float) -> dict[str, Any]:
    """Hold ``runs`` in flight and retrieve them as fast as one load process on the other core can."""
    port = free_port()
    base = f"http://127.0.0.1:{port}/v1"
    server, admin = _started(port)
    try:
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


def _started(port: int) -> tuple[Any, EmulatorAdmin]:
    server = cap.start_emulator(port, EMULATOR_CORE)
    admin = EmulatorAdmin(f"http://127.0.0.1:{port}/v1")
    deadline = time.monotonic() + 30
    while True:
        try:
            if admin.health():
                return server, admin
        except OSError:
            if time.monotonic() > deadline:
                stop(server)
                raise
            time.sleep(0.05)


def measure_creates(starts: int) -> dict[str, Any]:
    """Job starts a second the emulator serves on one core: a conversation create and a background response
    create each, `CONCURRENCY` at a time from one load process on the other core."""
    port = free_port()
    server, _admin = _started(port)
    try:
        ctx = multiprocessing.get_context("fork")
        queue: Any = ctx.Queue()
        load_core = min(contender_cores())
        args = (f"http://127.0.0.1:{port}/v1", starts, CONCURRENCY, load_core, queue)
        loader = ctx.Process(target=cap._creates_process, args=args)
        loader.start()
        part = queue.get()
        loader.join()
    finally:
        stop(server)
    rate = part["starts"] / part["elapsed_s"]
    return {
        "starts_per_s": round(rate, 1),
        "creates_per_s": round(2 * rate, 1),
        "starts": part["starts"],
        "errors": part["errors"],
        "elapsed_s": round(part["elapsed_s"], 2),
        "concurrency": CONCURRENCY,
    }


def measure_deliveries(count: int) -> dict[str, Any]:
    """Signed webhook deliveries a second the emulator sends from one core, to a receiver on the other
    (which answers 200 without verifying, so the emulator is what is measured)."""
    port = free_port()
    server, admin = _started(port)
    emulator_cpu = psutil.Process(server.pid)
    try:
        with WebhookReceiver(verify=False) as receiver:
            admin.set_webhooks(urls=[receiver.url])
            admin.emit_webhooks(50)  # warm the emulator's connection pool
            receiver.wait_count(50, timeout=30)
            cpu0, began = sum(emulator_cpu.cpu_times()[:2]), time.monotonic()
            admin.emit_webhooks(count)
            receiver.wait_count(50 + count, timeout=600)
            elapsed = time.monotonic() - began
            cpu = sum(emulator_cpu.cpu_times()[:2]) - cpu0
    finally:
        stop(server)
    return {
        "deliveries_per_s": round(count / elapsed, 1),
        "deliveries": count,
        "elapsed_s": round(elapsed, 2),
        "emulator_cpu_ms_per_delivery": round(1000 * cpu / count, 3),
    }


def main(mode: str, out: Path, command: str) -> dict[str, Any]:
    """Run S4 for ``mode`` and write ``out/s4_emulator.json``."""
    say("S4 emulator capacity: starting")
    runs, seconds = SIZES[mode]
    figures = measure(runs, seconds)
    say(f"S4 emulator capacity: {figures['retrieves_per_s']:,} retrieves/s on one core")
    figures["creates"] = measure_creates(CREATE_STARTS[mode])
    say(f"S4 emulator capacity: {figures['creates']['starts_per_s']:,} job starts/s (two creates each)")
    figures["deliveries"] = measure_deliveries(DELIVERIES[mode])
    say(f"S4 emulator capacity: {figures['deliveries']['deliveries_per_s']:,} signed deliveries/s")
    result = {"scenario": "s4_emulator", "mode": mode, "command": command, **figures}
    write_result(out, "s4_emulator", result)
    return result
