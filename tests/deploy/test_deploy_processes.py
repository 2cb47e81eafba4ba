"""Every service started as the deployment files say, as processes, and jobs run end to end through them.

No container engine runs here, so each compose service and each systemd unit is started as the process its
file describes: the compose command after the Dockerfile's ENTRYPOINT of the stage it builds, or the unit's
``ExecStart`` after its ``Environment=`` and ``EnvironmentFile=``, with the variable names as written. Only
hosts, ports, paths and secret values are substituted (`deployment.Substitutions`). A command or a variable
that drifts from the code (a renamed flag or role, a missing or misspelt variable, a queue no worker
serves, a healthcheck that no longer answers, a stop that outlasts its grace period) fails here.
"""

from __future__ import annotations

import base64
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path

import pytest
import redis
from deployment import (
    DEPLOY,
    ROOT,
    SYSTEMD,
    Processes,
    Running,
    Service,
    Substitutions,
    compose_services,
    healthcheck_argv,
    systemd_unit,
    wait_until,
)
from helpers import http_status

from devkit.redis_server import free_port, redis_server_binary
from schemas.job import JobRecord, JobStatus
from worker.app import create_app
from worker.client import Jobs
from worker.settings import Settings

pytestmark = pytest.mark.timeout(240)

SECRETS = {
    "REDIS_PASSWORD": "redis-secret-for-the-test",
    "FLOWER_PASSWORD": "flower-secret-for-the-test",
    "OPENAI_API_KEY": "sk-test",
    "OPENAI_WEBHOOK_SECRET": "whsec_" + base64.b64encode(b"deploy-test-webhook-secret-32byt").decode(),
}
"""The secret values compose interpolates (names from compose.yaml's ${...:?} variables)."""

VENV_BIN = Path(sys.executable).parent
"""Where the image's /opt/venv/bin programs (ajobs, celery, python) are on this machine."""


@pytest.fixture
def processes(tmp_path: Path) -> Iterator[Processes]:
    """The processes a test starts; all stopped at teardown."""
    logs = tmp_path / "logs"
    logs.mkdir()
    started = Processes(logs)
    yield started
    started.stop_all()


def base_env() -> dict[str, str]:
    """This machine's environment without any setting, programs found where the image keeps them."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AJ_", "OPENAI_", "REDISCLI_"))}
    path = [str(VENV_BIN), str(Path(redis_server_binary()).parent), env.get("PATH", "/usr/bin:/bin")]
    # A container runtime sets HOSTNAME; the worker healthchecks name their worker with it (%h).
    return {**env, "PATH": os.pathsep.join(path), "HOSTNAME": socket.gethostname(), "PYTHONUNBUFFERED": "1"}


def machine(tmp_path: Path) -> Substitutions:
    """Hosts, ports and paths of this machine for those in the files (named volumes become directories)."""
    return Substitutions(
        hosts={"redis": "127.0.0.1", "emulator": "127.0.0.1"},
        ports={
            "6379": free_port(),
            "8765": free_port(),
            "5555": free_port(),
            "9808": free_port(),
            "8780": free_port(),
        },
        paths={},
    )


def mount_volumes(service: Service, subst: Substitutions, tmp_path: Path) -> None:
    """Give each volume of ``service`` a place here: a directory for a named volume, a localised copy
    (hosts, ports and paths substituted) for a bind-mounted file."""
    mounts = [volume.split(":")[:2] for volume in service.volumes]
    binds = [(source, target) for source, target in mounts if source.startswith((".", "/"))]
    for source, target in mounts:
        if (source, target) not in binds:
            directory = tmp_path / "volumes" / source
            directory.mkdir(parents=True, exist_ok=True)
            subst.paths[target] = str(directory)
    for source, target in binds:  # after the directories, which a bound file may name
        copy = tmp_path / "binds" / service.name / Path(source).name
        copy.parent.mkdir(parents=True, exist_ok=True)
        copy.write_text(subst((DEPLOY / source).read_text()))
        subst.paths[target] = str(copy)


def start_service(
    processes: Processes, service: Service, subst: Substitutions, cwd: Path, replica: int = 0
) -> Running:
    """Start one replica of a compose service as a process: its argv and environment, substituted."""
    env = {**base_env(), **{name: subst(value) for name, value in service.env.items()}}
    name = service.name if service.replicas == 1 else f"{service.name}-{replica + 1}"
    return processes.start(name, [subst(a) for a in service.argv], env, cwd)


def healthy(service: Service, subst: Substitutions, cwd: Path) -> bool:
    """True when the service's compose healthcheck passes, run as compose would run it."""
    assert service.healthcheck is not None, f"{service.name} has no healthcheck"
    env = {**base_env(), **{name: subst(value) for name, value in service.env.items()}}
    argv = [subst(a) for a in healthcheck_argv(service.healthcheck)]
    try:
        done = subprocess.run(argv, env=env, cwd=cwd, capture_output=True, timeout=30)
    except subprocess.TimeoutExpired:  # a check that outlasts its time failed: compose tries it again
        return False
    return done.returncode == 0


def start_redis_and_emulator(
    processes: Processes, services: dict[str, Service], subst: Substitutions, tmp_path: Path
) -> str:
    """Redis and the `try` profile's emulator from compose.yaml, once healthy; the Redis URL of the roles."""
    redis_service, emulator = services["redis"], services["emulator"]
    assert emulator.profiles == ["try"]
    mount_volumes(redis_service, subst, tmp_path)
    started = start_service(processes, redis_service, subst, tmp_path)
    wait_until(lambda: healthy(redis_service, subst, tmp_path), "Redis healthy", 20, [started])
    # The emulator image runs from /app, which holds the emulator/ package: the checkout here.
    started = start_service(processes, emulator, subst, ROOT)
    wait_until(lambda: healthy(emulator, subst, ROOT), "the emulator healthy", 30, [started])
    return subst(services["worker-runs"].env["AJ_REDIS_URL"])


def producer(monkeypatch: pytest.MonkeyPatch, env: dict[str, str]) -> Jobs:
    """A producer client with the roles' settings (``env``: their AJ_* and OPENAI_* variables)."""
    for name in [n for n in os.environ if n.startswith(("AJ_", "OPENAI_"))]:
        monkeypatch.delenv(name)
    for name, value in env.items():
        if name.startswith(("AJ_", "OPENAI_")):
            monkeypatch.setenv(name, value)
    settings = Settings()
    return Jobs(settings, celery=create_app(settings))


def run_the_three_jobs(jobs: Jobs, files: Path) -> dict[str, JobRecord]:
    """A run, an index job over files in the shared directory, and a clean-up of the run's conversation."""
    (files / "shipping.md").write_text("# Shipping\n\nOrders ship within two working days.\n")
    (files / "returns.md").write_text("# Returns\n\nReturns are accepted for 30 days.\n")
    question = [{"role": "user", "content": "What is the capital of France?"}]
    run = jobs.submit({"kind": "run", "backend": "responses", "model": "gpt-4o", "messages": question})
    paths = [str(files / "shipping.md"), str(files / "returns.md")]
    index = jobs.submit({"kind": "index", "new_store": {"name": "deploy-test"}, "paths": paths})
    records = {"run": jobs.wait(run.id, timeout=60), "index": jobs.wait(index.id, timeout=60)}
    cleanup = jobs.submit({"kind": "cleanup", "targets": ["conversations"], "idle_s": 0.001})
    records["cleanup"] = jobs.wait(cleanup.id, timeout=60)
    return records


def assert_jobs_done(records: dict[str, JobRecord]) -> None:
    """Each job completed with what a user would look for."""
    for kind, record in records.items():
        assert record.status == JobStatus.COMPLETED, (kind, record.error)
    assert records["run"].result and records["run"].result["text"]
    assert records["index"].progress is not None and records["index"].progress.completed == 2
    assert records["cleanup"].result is not None
    assert records["cleanup"].result["targets"]["conversations"]["deleted"] == 1


def tasks_run(handle: Running) -> set[str]:
    """The task names a worker's log says it received."""
    return set(re.findall(r"Task (aj\.[a-z_]+\.[a-z_]+)\[[^]]+\] received", handle.text()))


def assert_queue_split(runs: Running, indexing: Running) -> None:
    """Run work went to the run worker only; indexing and clean-up to the other one only."""
    on_runs, on_indexing = tasks_run(runs), tasks_run(indexing)
    assert "aj.run.start" in on_runs and all(t.startswith("aj.run.") for t in on_runs), on_runs
    assert {"aj.index.start", "aj.cleanup.start"} <= on_indexing, on_indexing
    assert not any(t.startswith("aj.run.") for t in on_indexing), on_indexing


def assert_durable(url: str) -> None:
    """The Redis the files configure keeps an append-only file fsynced every second, and never evicts."""
    client = redis.Redis.from_url(url)
    try:
        assert client.config_get("appendonly")["appendonly"] == "yes"
        assert client.config_get("appendfsync")["appendfsync"] == "everysec"
        assert client.config_get("maxmemory-policy")["maxmemory-policy"] == "noeviction"
    finally:
        client.close()


def stop_within(processes: Processes, handle: Running, sig: int, grace: float) -> None:
    """``sig`` stops ``handle`` (a warm shutdown for a worker) before ``grace`` runs out, cleanly: exit 0, or
    death by ``sig`` itself, which systemd counts as a clean stop (the exporter has no handler for it)."""
    took = processes.stop(handle, sig, grace)
    code = handle.proc.returncode
    assert code is not None and took < grace, f"{handle.name}: {took:.1f} s of {grace} s"
    assert code in (0, -sig), f"{handle.name} exited {code}:\n{handle.text()[-2000:]}"


def test_the_compose_services_run_a_run_an_index_and_a_clean_up_job(
    tmp_path: Path, processes: Processes, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given every service of compose.yaml, the `try` profile's emulator included, started as a process from
    # its image's entrypoint and its command, with its variables as named there (OPENAI_BASE_URL and
    # OPENAI_API_KEY unset: the defaults point at the emulator), each replica, each healthcheck passing
    subst = machine(tmp_path)
    services = compose_services(SECRETS)
    redis_url = start_redis_and_emulator(processes, services, subst, tmp_path)
    workdir = tmp_path / "app"  # the image's empty WORKDIR
    workdir.mkdir()
    roles = [s for s in services.values() if s.name not in ("redis", "emulator")]
    started: dict[str, list[Running]] = {}
    for service in roles:
        mount_volumes(service, subst, tmp_path)
        started[service.name] = [start_service(processes, service, subst, workdir, replica=i)
                                 for i in range(service.replicas)]  # fmt: skip
    every = [r for handles in started.values() for r in handles]
    for name in ("worker-runs", "worker-active", "worker-indexing"):
        (handle,) = started[name]
        wait_until(lambda h=handle: "ready." in h.text(), f"{name} ready", 60, every)  # type: ignore[misc]
    # All healthchecks at once, as compose runs them (a worker's pings Celery: seconds, under load).
    with ThreadPoolExecutor(len(roles)) as pool:
        checks = [
            pool.submit(wait_until, partial(healthy, s, subst, workdir), f"{s.name} healthy", 120, every)
            for s in roles
        ]
        for check in checks:
            check.result()

    # When a run, an indexing job over files in the shared volume, and a clean-up are submitted
    jobs = producer(monkeypatch, {k: subst(v) for k, v in services["worker-runs"].env.items()})
    files = Path(subst("/srv/assistant-jobs/files"))
    records = run_the_three_jobs(jobs, files)

    # Then each ends completed, on the worker of its queue family, against a durable Redis with a password
    assert_jobs_done(records)
    assert_queue_split(started["worker-runs"][0], started["worker-indexing"][0])
    assert_durable(redis_url)
    with pytest.raises(redis.AuthenticationError):
        redis.Redis(port=subst.ports["6379"]).ping()
    # and of the two beats exactly one holds the lock and fires the sweeps
    beats = started["beat"]
    assert len(beats) == 2 and all(b.proc.poll() is None for b in beats)
    wait_until(lambda: any("Acquired lock" in b.text() for b in beats), "a beat taking the lock", 30, beats)
    assert sum("Acquired lock" in b.text() for b in beats) == 1
    # and Flower shows the workers with the credentials only, and the exporter counts the three jobs
    flower = f"http://127.0.0.1:{subst.ports['5555']}"
    credentials = f"{services['flower'].env['AJ_FLOWER_USER']}:{SECRETS['FLOWER_PASSWORD']}"
    assert http_status(f"{flower}/workers") == 401
    assert http_status(f"{flower}/workers", credentials) == 200
    with urllib.request.urlopen(f"http://127.0.0.1:{subst.ports['9808']}/metrics", timeout=5) as response:
        assert 'aj_jobs{status="completed"} 3.0' in response.read().decode()

    # and the webhook receiver answers its probe
    assert http_status(f"http://127.0.0.1:{subst.ports['8780']}/health") == 200
    # and SIGTERM (the image's STOPSIGNAL) stops each worker and the receiver within its stop_grace_period
    for name in ("worker-runs", "worker-active", "worker-indexing", "webhooks"):
        stop_within(processes, started[name][0], signal.SIGTERM, services[name].stop_grace_s)


def test_the_systemd_units_run_a_run_an_index_and_a_clean_up_job(
    tmp_path: Path, processes: Processes, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given an operator's /etc/assistant-jobs/env made from deploy/env.example (the hosts, ports and secrets
    # set on its own lines) and the worker instances' files from deploy/systemd/
    subst = machine(tmp_path)
    services = compose_services(SECRETS)
    redis_url = start_redis_and_emulator(processes, services, subst, tmp_path)
    etc, state = tmp_path / "etc", tmp_path / "state"
    etc.mkdir()
    state.mkdir()
    flower_port, metrics_port = subst.ports["5555"], subst.ports["9808"]
    settings = {
        "AJ_REDIS_URL": redis_url,
        "OPENAI_API_KEY": SECRETS["OPENAI_API_KEY"],
        "OPENAI_BASE_URL": f"http://127.0.0.1:{subst.ports['8765']}/v1",
        "AJ_FLOWER_USER": "ops",
        "AJ_FLOWER_PASSWORD": SECRETS["FLOWER_PASSWORD"],
        "AJ_FLOWER_PORT": str(flower_port),
        "AJ_METRICS_PORT": str(metrics_port),
        "OPENAI_WEBHOOK_SECRET": SECRETS["OPENAI_WEBHOOK_SECRET"],
        "AJ_WEBHOOK_PORT": str(subst.ports["8780"]),
    }
    (etc / "env").write_text(operator_env_file(settings))
    for example in SYSTEMD.glob("worker-*.env"):
        shutil.copy(example, etc / example.name)
    layout = Substitutions(hosts={}, ports={}, paths={
        "/opt/assistant-jobs/bin/": f"{VENV_BIN}/", "/etc/assistant-jobs/": f"{etc}/",
        "/var/lib/assistant-jobs": str(state)})  # fmt: skip

    # When each unit is started as systemd would start it: the worker template as @runs and @indexing
    host = socket.gethostname()
    units = {
        "worker@runs": systemd_unit(SYSTEMD / "assistant-jobs-worker@.service", "runs", host, layout),
        "worker@indexing": systemd_unit(SYSTEMD / "assistant-jobs-worker@.service", "indexing", host, layout),
        "worker@active": systemd_unit(SYSTEMD / "assistant-jobs-worker@.service", "active", host, layout),
        **{name: systemd_unit(SYSTEMD / f"assistant-jobs-{name}.service", "", host, layout)
           for name in ("beat", "flower", "metrics", "webhooks")},
    }  # fmt: skip
    started = {name: processes.start(name, unit.argv, {**base_env(), **unit.env}, unit.working_directory)
               for name, unit in units.items()}  # fmt: skip
    every = list(started.values())
    for name in ("worker@runs", "worker@indexing", "worker@active"):
        wait_until(lambda n=name: "ready." in started[n].text(), f"{name} ready", 60, every)  # type: ignore[misc]
    wait_until(lambda: http_status(f"http://127.0.0.1:{flower_port}/healthcheck") == 200, "Flower", 60, every)
    wait_until(lambda: http_status(f"http://127.0.0.1:{metrics_port}/metrics") == 200, "metrics", 60, every)
    hooks = f"http://127.0.0.1:{subst.ports['8780']}/health"
    wait_until(lambda: http_status(hooks) == 200, "the webhook receiver", 60, every)

    # and a run, an indexing job and a clean-up are submitted
    jobs = producer(monkeypatch, settings)
    files = state / "files"
    files.mkdir()
    records = run_the_three_jobs(jobs, files)

    # Then each ends completed on the worker of its queue family, and the beat takes the lock
    assert_jobs_done(records)
    assert_queue_split(started["worker@runs"], started["worker@indexing"])
    wait_until(lambda: "Acquired lock" in started["beat"].text(), "the beat taking the lock", 30, every)
    assert http_status(f"http://127.0.0.1:{flower_port}/workers", f"ops:{SECRETS['FLOWER_PASSWORD']}") == 200

    # and each unit's KillSignal stops it within its TimeoutStopSec
    for name in ("worker@runs", "worker@indexing", "worker@active", "beat", "flower", "metrics", "webhooks"):
        unit = units[name]
        stop_within(processes, started[name], signal.Signals[unit.kill_signal], unit.timeout_stop_s)


def operator_env_file(settings: dict[str, str]) -> str:
    """``deploy/env.example`` with ``settings`` uncommented and set, as an operator edits it; every name
    set must be one the example lists."""
    text = (DEPLOY / "env.example").read_text()
    for name, value in settings.items():
        line = f"#{name}="
        assert f"\n{line}" in text, f"{name} is not in deploy/env.example"
        start = text.index(f"\n{line}") + 1
        end = text.index("\n", start)
        text = text[:start] + f"{name}={value}" + text[end:]
    return text
