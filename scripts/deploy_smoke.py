"""``make deploy-smoke``: build the image, bring compose's ``try`` profile up, run jobs through it, tear down.

    python scripts/deploy_smoke.py [--engine docker|podman] [--keep]

For a machine with a container engine that can pull images (Docker with its compose plugin, or Podman with
``podman compose``). It builds both image targets, starts every service of ``deploy/compose.yaml`` with the
emulator (random Redis and Flower passwords), waits for the healthchecks, then submits from inside the run
worker's container, with the image's own CLI: a run, an indexing job over a file copied into the indexing
worker, and a clean-up dry run; each must complete. Everything is removed at the end (volumes included)
unless ``--keep``. Exit codes: 0 every job completed, 1 a job or a step failed, 2 no engine answers.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = ROOT / "deploy" / "compose.yaml"
SAMPLE = ROOT / "devkit" / "demo_files" / "shipping.md"
"""A file to index: copied into the indexing worker's container, where the job reads it."""
PROJECT = "assistant-jobs-smoke"


class NoEngine(Exception):
    """No container engine answers on this machine."""


def find_engine(wanted: str | None) -> list[str]:
    """The compose command of the first engine that answers (``docker compose`` or ``podman compose``)."""
    for engine in [wanted] if wanted else ["docker", "podman"]:
        if shutil.which(engine) is None:
            continue
        info = subprocess.run([engine, "info"], capture_output=True, text=True, timeout=60)
        if info.returncode != 0:
            continue
        compose = subprocess.run([engine, "compose", "version"], capture_output=True, text=True, timeout=60)
        if compose.returncode == 0:
            return [engine, "compose"]
    raise NoEngine(
        "no container engine answers here (tried: "
        + (wanted or "docker, podman")
        + "): make deploy-smoke needs Docker with its compose plugin, or Podman with podman compose, and "
        "access to an image registry. Without them, make deploy-check and tests/deploy/ check the same "
        "files (the latter starts every service as a process)."
    )


def step(argv: list[str], env: dict[str, str] | None = None, capture: bool = False) -> str:
    """Run one command, printing it; raise on failure."""
    print("+", " ".join(argv), flush=True)
    done = subprocess.run(argv, env=env, cwd=COMPOSE.parent, text=True, capture_output=capture, check=False)
    if done.returncode != 0:
        raise RuntimeError(
            f"failed ({done.returncode}): {' '.join(argv)}\n{done.stdout or ''}{done.stderr or ''}"
        )
    return done.stdout or ""


def run_jobs(compose: list[str], env: dict[str, str]) -> None:
    """Submit a run, an index job and a clean-up dry run with the image's CLI; each must complete."""
    exec_ = [*compose, "exec", "-T"]
    step([*compose, "cp", str(SAMPLE), f"worker-indexing:/tmp/{SAMPLE.name}"], env)
    submissions = {
        "run": ["worker-runs", "ajobs", "submit", "run", "--backend", "responses", "--model", "gpt-4o",
                "-m", "What is the capital of France?"],
        "index": ["worker-indexing", "ajobs", "submit", "index", "--new-store", "smoke",
                  f"/tmp/{SAMPLE.name}"],
        "cleanup": ["worker-runs", "ajobs", "submit", "cleanup", "--dry-run"],
    }  # fmt: skip
    for name, argv in submissions.items():
        out = step([*exec_, *argv, "--wait", "--timeout", "120", "--json"], env, capture=True)
        record = json.loads(out)
        print(f"{name}: {record['status']}")
        if record["status"] != "completed":
            raise RuntimeError(f"the {name} job ended {record['status']}: {record.get('error')}")


def main(argv: list[str] | None = None) -> int:
    """Build, start, run the jobs, tear down."""
    parser = argparse.ArgumentParser(description="Smoke-test deploy/compose.yaml's try profile.")
    parser.add_argument("--engine", choices=["docker", "podman"])
    parser.add_argument("--keep", action="store_true", help="leave the services running")
    args = parser.parse_args(argv)
    try:
        compose = [*find_engine(args.engine), "-p", PROJECT, "-f", str(COMPOSE), "--profile", "try"]
    except NoEngine as exc:
        print(f"deploy-smoke: {exc}", file=sys.stderr)
        return 2
    env = {
        **os.environ,
        "REDIS_PASSWORD": secrets.token_hex(24),
        "FLOWER_PASSWORD": secrets.token_hex(12),
    }
    try:
        step([*compose, "build"], env)
        step([*compose, "up", "--detach", "--wait", "--wait-timeout", "180"], env)
        run_jobs(compose, env)
        print("deploy-smoke: every job completed")
        return 0
    except RuntimeError as exc:
        print(f"deploy-smoke: {exc}", file=sys.stderr)
        subprocess.run([*compose, "logs", "--tail", "50"], env=env, cwd=COMPOSE.parent, check=False)
        return 1
    finally:
        if not args.keep:
            subprocess.run([*compose, "down", "--volumes", "--remove-orphans"], env=env, cwd=COMPOSE.parent,
                           check=False)  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
