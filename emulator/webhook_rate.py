"""How many signed webhook deliveries a second the emulator sends: `python -m emulator.webhook_rate`.

Starts the emulator in its own process (`python -m emulator`), a receiver in this one, has the emulator emit
`--count` events at once through the admin API, and times them until the receiver has them all. It prints
the rate, and the CPU time per delivery of the emulator and of the receiver: on a shared machine the rate
depends on what else runs, the emulator's CPU time per delivery much less.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import time

from emulator.admin_client import EmulatorAdmin
from emulator.webhook_receiver import WebhookReceiver


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _cpu_s(pid: int) -> float:
    """User plus system CPU seconds of a process (Linux /proc; 0 elsewhere)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _start_emulator(port: int, url: str) -> subprocess.Popen[bytes]:
    env = {**os.environ, "AJ_EMULATOR_PROFILE": json.dumps({"webhook_urls": [url]})}
    command = [sys.executable, "-m", "emulator", "--port", str(port)]
    process = subprocess.Popen(command, env=env)
    admin = EmulatorAdmin(f"http://127.0.0.1:{port}")
    deadline = time.monotonic() + 20
    while True:
        try:
            if admin.health():
                return process
        except OSError:
            pass
        if time.monotonic() > deadline or process.poll() is not None:
            process.kill()
            raise RuntimeError("the emulator did not start")
        time.sleep(0.05)


def measure(count: int, verify: bool) -> dict[str, float]:
    """Emit `count` events and time their delivery; the rate, the wall time and the emulator's CPU."""
    with WebhookReceiver(verify=verify) as receiver:
        port = _free_port()
        process = _start_emulator(port, receiver.url)
        try:
            admin = EmulatorAdmin(f"http://127.0.0.1:{port}")
            admin.emit_webhooks(50)  # warm the connection pool up
            receiver.wait_count(50, timeout=30)
            cpu_before, started = _cpu_s(process.pid), time.monotonic()
            receiver_cpu_before = time.process_time()
            admin.emit_webhooks(count)
            seen = receiver.wait_count(50 + count, timeout=600)
            elapsed = time.monotonic() - started
            cpu = _cpu_s(process.pid) - cpu_before
            receiver_cpu = time.process_time() - receiver_cpu_before
            counters = admin.webhook_counters()
        finally:
            process.terminate()
            process.wait(timeout=10)
    unverified = sum(not s.verified for s in seen) if verify else 0
    return {
        "deliveries": count,
        "seconds": round(elapsed, 3),
        "per_second": round(count / elapsed),
        "emulator_cpu_ms_per_delivery": round(cpu * 1000 / count, 4),
        "receiver_cpu_ms_per_delivery": round(receiver_cpu * 1000 / count, 4),
        "load_average_1min": os.getloadavg()[0],
        "unverified": unverified,
        "failed_attempts": counters["failed"],
    }


def main(argv: list[str] | None = None) -> None:
    """Parse the command line, measure, print the figures as JSON."""
    parser = argparse.ArgumentParser(prog="python -m emulator.webhook_rate", description=__doc__)
    parser.add_argument("--count", type=int, default=20_000, help="events to deliver (default 20000)")
    parser.add_argument(
        "--verify", action="store_true", help="verify each delivery with the openai SDK in the receiver"
    )
    args = parser.parse_args(argv)
    print(json.dumps(measure(args.count, args.verify)))


if __name__ == "__main__":
    main()
