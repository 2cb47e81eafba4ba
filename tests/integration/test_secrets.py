"""No secret ever leaves its place: with recognisable secrets configured (the API key, a Redis password, the
Flower password, the webhook secret), jobs are driven down their failure paths through real processes, and
every log line, every byte in Redis and every Flower page is searched for them."""

from __future__ import annotations

import base64
import subprocess
import sys
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis
from helpers import ROOT, WorkerProcess, kill_all, wait_for

from devkit.redis_server import RedisServer, free_port, redis_server
from emulator.server import EmulatorHandle
from schemas.job import JobStatus
from worker.app import create_app
from worker.client import Jobs
from worker.settings import Settings

API_KEY = "sk-SECRET-apikey-0123456789abcdef"
REDIS_PASSWORD = "rpw-SECRET-redis"
FLOWER_PASSWORD = "pw-SECRET-flower"
WEBHOOK_SECRET = "whsec_" + base64.b64encode(b"wh-SECRET-webhook-signing-key").decode()
SECRETS = (API_KEY, REDIS_PASSWORD, FLOWER_PASSWORD, WEBHOOK_SECRET, "wh-SECRET")


@pytest.fixture
def guarded() -> Iterator[RedisServer]:
    """A Redis that needs a password."""
    with redis_server(password=REDIS_PASSWORD) as server:
        yield server


def dump(client: redis.Redis) -> bytes:
    """Every key and every value in Redis, as bytes."""
    out = []
    for key in client.scan_iter(count=1000):
        kind = client.type(key)
        out.append(key)
        if kind == b"string":
            out.append(client.get(key) or b"")
        elif kind == b"hash":
            out.extend(v for pair in client.hgetall(key).items() for v in pair)
        elif kind == b"list":
            out.extend(client.lrange(key, 0, -1))
        elif kind == b"set":
            out.extend(client.smembers(key))
        elif kind == b"zset":
            out.extend(m for m, _ in client.zrange(key, 0, -1, withscores=True))
        elif kind == b"stream":
            out.extend(v for _, fields in client.xrange(key) for pair in fields.items() for v in pair)
    return b"\n".join(out)


def flower_pages(port: int) -> str:
    """Flower's pages and API answers, fetched with the credentials (so the secrets could show)."""
    auth = base64.b64encode(f"ops:{FLOWER_PASSWORD}".encode()).decode()
    pages = []
    for path in ("/", "/workers", "/tasks", "/broker", "/api/tasks", "/api/workers", "/api/queues/length"):
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}{path}", headers={"Authorization": f"Basic {auth}"}
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as answer:
                pages.append(answer.read().decode(errors="replace"))
        except OSError as exc:
            pages.append(f"{path}: {exc}")
    return "\n".join(pages)


@pytest.mark.slow
def test_no_secret_reaches_a_log_redis_or_flower_down_every_failure_path(
    guarded: RedisServer,
    env: dict[str, str],
    worker: Callable[..., WorkerProcess],
    emulator: EmulatorHandle,
    tmp_path: Path,
) -> None:
    # Given a worker, Flower and the webhook receiver configured with recognisable secrets, the API key one
    # the API refuses, and a Redis behind a password
    secret_env = {
        "AJ_REDIS_URL": guarded.url,
        "OPENAI_API_KEY": API_KEY,
        "AJ_FLOWER_USER": "ops",
        "AJ_FLOWER_PASSWORD": FLOWER_PASSWORD,
        "AJ_WEBHOOK_SECRET": WEBHOOK_SECRET,
        "AJ_WEBHOOKS": "true",
        "AJ_MAX_RETRIES": "1",
    }
    handle = worker(extra_env=secret_env)
    flower_port, hook_port = free_port(), free_port()
    side = {**env, **secret_env, "AJ_FLOWER_PORT": str(flower_port), "AJ_WEBHOOK_PORT": str(hook_port)}
    outputs = [tmp_path / "flower.out", tmp_path / "webhooks.out"]
    procs = []
    for output, module in zip(outputs, (["worker.flower"], ["worker.cli", "webhooks"]), strict=True):
        with output.open("wb") as out:
            argv = [sys.executable, "-m", *module]
            procs.append(subprocess.Popen(argv, cwd=ROOT, env=side, stdout=out, stderr=subprocess.STDOUT))
    try:
        settings = Settings(redis_url=guarded.url, openai_api_key=API_KEY)  # type: ignore[call-arg]
        jobs = Jobs(settings, celery=create_app(settings))
        # When jobs fail every way they can: the API refuses the key (run, index, clean-up listing), the API
        # cannot be reached, a record goes corrupt, a deadline passes
        refs = [
            jobs.submit({"kind": "run", "model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}),
            jobs.submit({"kind": "index", "new_store": {"name": "s"}, "file_ids": ["file-1"]}),
            jobs.submit({"kind": "cleanup", "targets": ["vector_stores", "files"]}),
            jobs.submit({"kind": "run", "model": "gpt-4o", "messages": [{"role": "user", "content": "late"}],
                         "deadline_s": 0.001}),
        ]  # fmt: skip
        corrupt = jobs.submit(
            {"kind": "run", "model": "gpt-4o", "messages": [{"role": "user", "content": "x"}]}
        )
        jobs.store.redis.hset(f"aj:job:{corrupt.id}", "record", "not json {")
        unreachable_env = {**secret_env, "OPENAI_BASE_URL": f"http://127.0.0.1:{free_port()}/v1"}
        other = worker(name="unreachable", extra_env={**unreachable_env, "AJ_QUEUE_RUNS": "runs.unreachable"})
        lonely = Settings(redis_url=guarded.url, queue_runs="runs.unreachable")  # type: ignore[call-arg]
        refs.append(
            Jobs(lonely, celery=create_app(lonely)).submit(
                {"kind": "run", "model": "gpt-4o", "messages": [{"role": "user", "content": "nobody home"}]}
            )
        )
        records = [jobs.wait(ref.id, timeout=120) for ref in [*refs, corrupt]]
        # Then each ended with its reason...
        assert all(r.status.ended for r in records), [(r.kind, r.status) for r in records]
        assert {r.error.code for r in records if r.error} >= {"invalid_api_key", "corrupt_record"}
        wait_for(lambda: flower_pages(flower_port).count("aj.run.start") > 0, 60, "Flower to list the tasks")
        # ...and no secret is in any job, event or key in Redis, any process's output, or any Flower page
        text = dump(redis.Redis.from_url(guarded.url)).decode(errors="replace")
        logs = [
            handle.log,
            handle.log.with_suffix(".out"),
            other.log,
            other.log.with_suffix(".out"),
            *outputs,
        ]
        text += "\n".join(p.read_text(errors="replace") for p in logs) + flower_pages(flower_port)
        assert "aj:job:" in text and JobStatus.FAILED.value in text  # the search did see the jobs
        found = {
            secret: text[max(text.index(secret) - 300, 0) : text.index(secret) + 100]
            for secret in SECRETS
            if secret in text
        }
        assert found == {}, f"secrets leaked: {found}"
    finally:
        kill_all(procs)
