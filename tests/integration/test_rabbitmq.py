"""RabbitMQ as the broker (records, events and the poll schedule stay in Redis): jobs of every kind end to end
on classic and on quorum queues, and a worker SIGKILLed mid-start has its message redelivered at once, with
no second run.

Runs against the machine's RabbitMQ on 127.0.0.1:5672 (guest/guest), skipped when it does not answer. Each
test declares queues of its own (unique names through the AJ_QUEUE_* settings) and deletes them after.
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import amqp
import pytest
import redis
from helpers import WorkerProcess, created_per_job, wait_for, write_files
from kombu import Connection
from probes import configure, forget_settings

from emulator.server import EmulatorHandle
from schemas.job import JobStatus
from tasks.assistants import beta
from worker.app import create_app
from worker.client import Jobs

pytestmark = [pytest.mark.rabbitmq, pytest.mark.timeout(240)]

RABBITMQ = "amqp://guest:guest@127.0.0.1:5672//"
"""The machine's RabbitMQ."""


def rabbitmq_answers() -> bool:
    """Whether RabbitMQ accepts a connection within a second or two."""
    try:
        with Connection(RABBITMQ, connect_timeout=2) as conn:
            conn.ensure_connection(max_retries=1, timeout=2)
    except Exception:
        return False
    return True


@pytest.fixture
def queues() -> Iterator[dict[str, str]]:
    """This test's own queue names (as settings), deleted with their exchanges afterwards."""
    if not rabbitmq_answers():
        pytest.skip(f"no RabbitMQ answers at {RABBITMQ}")
    prefix = f"aj-test-{uuid.uuid4().hex[:8]}."
    names = {
        "AJ_QUEUE_RUNS_ACTIVE": prefix + "runs.active",
        "AJ_QUEUE_RUNS": prefix + "runs",
        "AJ_QUEUE_INDEXING": prefix + "indexing",
        "AJ_QUEUE_MAINTENANCE": prefix + "maintenance",
    }
    yield names
    with Connection(RABBITMQ, connect_timeout=5) as conn:
        for name in names.values():
            channel = conn.channel()
            try:
                channel.queue_delete(name)
                channel.exchange_delete(name)
            finally:
                channel.close()


@pytest.fixture(autouse=True)
def fresh_settings() -> Iterator[None]:
    """Settings read again in each test, forgotten after it."""
    yield
    forget_settings()


def rabbit_env(queues: dict[str, str], redis_url: str, **extra: str) -> dict[str, str]:
    """The settings of a worker or producer on RabbitMQ, with the store on the test's Redis."""
    return {"AJ_BROKER_URL": RABBITMQ, "AJ_REDIS_URL": redis_url, **queues, **extra}


def producer(monkeypatch: pytest.MonkeyPatch, env: dict[str, str], emulator: EmulatorHandle) -> Jobs:
    """A producer with ``env``'s settings."""
    s = configure(monkeypatch, {**env, "OPENAI_API_KEY": "sk-test", "OPENAI_BASE_URL": emulator.base_url})
    return Jobs(s, celery=create_app(s))


def declared_type(name: str) -> str:
    """The queue's type as RabbitMQ holds it: declaring it again as a quorum queue fails unless it is one."""
    with Connection(RABBITMQ, connect_timeout=5) as conn:
        channel = conn.channel()
        try:
            channel.queue_declare(name, durable=True, auto_delete=False, arguments={"x-queue-type": "quorum"})
        except amqp.exceptions.PreconditionFailed as exc:
            return "classic" if "x-queue-type" in str(exc) else str(exc)
        finally:
            if channel.is_open:
                channel.close()
    return "quorum"


def node(role: str, queues: dict[str, str]) -> str:
    """A worker's node name of this test's own: a node's control queue on the broker is exclusive to it, and
    the broker is shared with every other test and run on this machine."""
    return f"{role}-{queues['AJ_QUEUE_RUNS'].split('.')[0]}"


@pytest.mark.parametrize("queue_type", ["classic", "quorum"])
def test_a_run_an_index_and_a_clean_up_job_end_to_end_through_rabbitmq(
    queue_type: str,
    queues: dict[str, str],
    redis_url: str,
    redis_client: redis.Redis,
    worker: Callable[..., WorkerProcess],
    emulator: EmulatorHandle,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    # Given a worker whose broker is RabbitMQ (queues of the type under test), its store Redis
    quorum = "true" if queue_type == "quorum" else "false"
    env = rabbit_env(queues, redis_url, AJ_BROKER_QUORUM_QUEUES=quorum)
    worker(extra_env=env, name=node("rabbit", queues))
    jobs = producer(monkeypatch, env, emulator)
    # When a run, an indexing job and a clean-up are submitted
    run = jobs.submit({"kind": "run", "backend": "responses", "model": "gpt-4o",
                       "messages": [{"role": "user", "content": "Hello"}]})  # fmt: skip
    index = jobs.submit({"kind": "index", "new_store": {"name": "rabbit"}, "paths": write_files(tmp_path, 3)})
    cleanup = jobs.submit({"kind": "cleanup", "targets": ["jobs"], "dry_run": True})
    # Then each completes
    for ref in (run, index, cleanup):
        record = jobs.wait(ref.id, timeout=90)
        assert record.status == JobStatus.COMPLETED, (record.kind, record.error)
    assert jobs.get(run.id).result["text"]
    # and their messages went through RabbitMQ, on queues of that type: Redis holds no queue of Celery's
    assert declared_type(queues["AJ_QUEUE_RUNS"]) == queue_type
    assert not list(redis_client.scan_iter("_kombu*"))


@pytest.mark.slow
def test_a_worker_killed_mid_start_has_its_message_redelivered_at_once_with_no_second_run(
    queues: dict[str, str],
    redis_url: str,
    worker: Callable[..., WorkerProcess],
    emulator: EmulatorHandle,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given a worker on RabbitMQ whose every create is slow, so a kill lands inside the start task
    env = rabbit_env(queues, redis_url)
    emulator.set_faults(latency_ms=1500, methods=["POST"])
    doomed = worker(node("doomed", queues), concurrency=1, extra_env=env)
    jobs = producer(monkeypatch, env, emulator)
    assistant = _assistant(emulator)
    ref = jobs.submit({"kind": "run", "backend": "assistants", "assistant_id": assistant,
                       "messages": [{"role": "user", "content": "slow start"}]})  # fmt: skip
    wait_for(lambda: jobs.get(ref.id).status == JobStatus.RUNNING, 30, "the start task to begin")
    [task_id] = set(re.findall(r"aj\.run\.start\[([0-9a-f-]+)\] received", doomed.log.read_text()))
    # When it is SIGKILLed there and another worker starts
    doomed.kill()
    killed_at = time.monotonic()
    survivor = worker(node("survivor", queues), extra_env=env)
    record = jobs.wait(ref.id, timeout=60)
    # Then RabbitMQ gave the survivor the very same message (no visibility timeout to wait out)
    assert f"aj.run.start[{task_id}] received" in survivor.log.read_text()
    # and the job completed with exactly one remote run
    assert record.status == JobStatus.COMPLETED, record.error
    assert created_per_job(emulator, "assistants") == {ref.id: 1}
    assert time.monotonic() - killed_at < 45


def _assistant(emulator: EmulatorHandle) -> str:
    import openai

    with openai.OpenAI(base_url=emulator.base_url, api_key="sk-test", max_retries=0) as api:
        return str(beta(api).assistants.create(model="gpt-4o").id)
