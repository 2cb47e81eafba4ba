"""The deployment files against the code and against each other, read without starting anything.

What the schema checkers (make deploy-check) cannot see: a variable the settings object does not read (it
ignores unknown ones, so a typo is silently a default), a grace period shorter than a task's time limit, a
queue no worker serves, an autoscaler watching the wrong list, a Redis without AOF or with eviction.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
import yaml
from deployment import (
    DEPLOY,
    DOCKERFILE,
    KUBERNETES,
    SYSTEMD,
    compose_services,
    dockerfile_entrypoints,
    read_environment_file,
    read_unit,
)

from scripts.env_example import env_names, render
from scripts.verify_units import verify
from worker.settings import Settings

ANY_SECRET = {"REDIS_PASSWORD": "x", "FLOWER_PASSWORD": "x"}
WORKERS = ("worker-runs", "worker-active", "worker-indexing")
AUTOSCALED = ("worker-runs", "worker-indexing")
"""The workers KEDA scales (the one serving runs.active alone is one or two by hand)."""
SECRET_NAMES = {"OPENAI_API_KEY", "AJ_FLOWER_PASSWORD", "REDIS_PASSWORD", "REDISCLI_AUTH"}


def settings_names() -> set[str]:
    """Every variable the settings object reads."""
    prefix = str(Settings.model_config.get("env_prefix", ""))
    return {n for name, f in Settings.model_fields.items() for n in env_names(name, f, prefix)}


def manifests() -> list[dict[str, Any]]:
    """Every Kubernetes object in deploy/kubernetes/ (KEDA's included)."""
    docs = []
    for path in sorted(KUBERNETES.rglob("*.yaml")):
        docs.extend(d for d in yaml.safe_load_all(path.read_text()) if d)
    return docs


def deployments() -> dict[str, dict[str, Any]]:
    """``name -> the Deployment's only container``."""
    return {
        d["metadata"]["name"]: d["spec"]["template"]["spec"]["containers"][0]
        for d in manifests()
        if d["kind"] == "Deployment"
    }


def k8s_env(container: dict[str, Any]) -> dict[str, str]:
    """A container's plain variables: the ConfigMap it loads, then its own ``value`` entries."""
    config = next(
        d for d in manifests() if d["kind"] == "ConfigMap" and d["metadata"]["name"] == "assistant-jobs"
    )
    env = {k: str(v) for k, v in config["data"].items()} if container.get("envFrom") else {}
    env.update({e["name"]: str(e["value"]) for e in container.get("env", []) if "value" in e})
    return env


def queues_of(argv: list[str]) -> set[str]:
    """The queues a worker command line serves (its ``-Q``)."""
    return set(argv[argv.index("-Q") + 1].split(","))


def effective(env: dict[str, str]) -> Settings:
    """The settings a process with ``env`` gets (the rest at their defaults); Kubernetes' ``$(VAR)``
    references are left out."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("AJ_", "OPENAI_"))}
    given = {k: v for k, v in env.items() if k.startswith(("AJ_", "OPENAI_")) and "$(" not in v}
    with mock.patch.dict(os.environ, {**clean, **given}, clear=True):
        return Settings(_env_file=None)  # type: ignore[call-arg]


def default_queues() -> set[str]:
    """The four queue names, as a worker with no queue setting has them."""
    s = effective({})
    return {s.queue_runs_active, s.queue_runs, s.queue_indexing, s.queue_maintenance}


def test_env_example_is_what_the_settings_object_generates() -> None:
    # Given the settings object as it is now; When env.example is generated; Then it is the committed file
    assert (DEPLOY / "env.example").read_text() == render(), "run: python scripts/env_example.py"


def test_every_setting_named_in_a_deployment_file_is_one_the_settings_object_reads() -> None:
    # Given every AJ_* and OPENAI_* name the compose services, the manifests and the units set
    named: dict[str, set[str]] = {}
    for service in compose_services(ANY_SECRET).values():
        named.setdefault("compose.yaml", set()).update(service.env)
    for container in deployments().values():
        named.setdefault("kubernetes", set()).update(e["name"] for e in container.get("env", []))
    config = next(
        d for d in manifests() if d["kind"] == "ConfigMap" and d["metadata"]["name"] == "assistant-jobs"
    )
    named["kubernetes"].update(config["data"])
    for unit in SYSTEMD.glob("*.service"):
        env_lines = [v for k, v in read_unit(unit)["Service"] if k == "Environment"]
        named.setdefault("systemd", set()).update(v.partition("=")[0] for v in env_lines)
    # Then each one is read by the settings object (unknown AJ_ names are ignored at start, silently)
    known = settings_names()
    for where, names in named.items():
        unknown = {n for n in names if n.startswith(("AJ_", "OPENAI_")) and n not in known}
        assert not unknown, f"{where} sets variables no setting reads: {sorted(unknown)}"


def test_worker_grace_periods_outlast_the_task_time_limit() -> None:
    # Given the workers' stop grace in each deployment and the hard time limit their settings give a task
    services = compose_services(ANY_SECRET)
    for name in WORKERS:
        limit = effective(services[name].env).task_time_limit
        # Then SIGTERM's warm shutdown can let a running task end before the kill
        assert services[name].stop_grace_s > limit, f"compose {name}"
    for d in manifests():
        if d["kind"] == "Deployment" and d["metadata"]["name"] in WORKERS:
            pod = d["spec"]["template"]["spec"]
            assert (
                pod["terminationGracePeriodSeconds"]
                > effective(k8s_env(pod["containers"][0])).task_time_limit
            )
    unit = dict(read_unit(SYSTEMD / "assistant-jobs-worker@.service")["Service"])
    assert unit["KillSignal"] == "SIGTERM" and unit["KillMode"] == "mixed"
    assert float(unit["TimeoutStopSec"]) > effective({}).task_time_limit


def test_the_workers_serve_every_queue_and_the_deployments_agree_on_their_commands() -> None:
    # Given the worker commands of compose, Kubernetes and the systemd instances' files
    services = compose_services(ANY_SECRET)
    compose_argv = {name: services[name].argv[1:] for name in WORKERS}  # after the ENTRYPOINT
    k8s_argv = {name: deployments()[name]["args"] for name in WORKERS}
    systemd_queues = [
        set(read_environment_file(f)["WORKER_QUEUES"].split(",")) for f in SYSTEMD.glob("worker-*.env")
    ]
    # Then together they serve the four queues, split the same way everywhere
    assert set().union(*(queues_of(a) for a in compose_argv.values())) == default_queues()
    assert k8s_argv == compose_argv
    assert sorted(map(sorted, systemd_queues)) == sorted(sorted(queues_of(a)) for a in compose_argv.values())


def test_each_worker_polls_the_kinds_of_its_queues_and_every_kind_is_polled() -> None:
    # Given each worker's queues and AJ_POLL_KINDS, in compose, Kubernetes and the systemd instances' files
    s = effective({})
    kinds_of_queue = {
        s.queue_runs_active: {"run"}, s.queue_runs: {"run"}, s.queue_indexing: {"index"},
        s.queue_maintenance: {"cleanup"},
    }  # fmt: skip
    services = compose_services(ANY_SECRET)
    workers = [(services[n].argv, services[n].env) for n in WORKERS]
    workers += [(c["args"], k8s_env(c)) for n, c in deployments().items() if n in WORKERS]
    for f in SYSTEMD.glob("worker-*.env"):
        values = read_environment_file(f)
        workers.append((["-Q", values["WORKER_QUEUES"]], values))
    polled: set[str] = set()
    for argv, env in workers:
        kinds = {k.value for k in effective(env).poll_kinds}
        # Then each polls exactly the kinds whose messages it serves (an indexing worker never polls runs)
        assert kinds == set().union(*(kinds_of_queue[q] for q in queues_of(argv))), (argv, env)
        polled |= kinds
    # and together they poll every kind
    assert polled == {"run", "index", "cleanup"}


def test_replicated_redis_settings_guard_against_losing_acknowledged_writes() -> None:
    # Given the directives for a Redis with replicas, and the single Redis's configuration
    replication = {line.split(None, 1)[0]: line.split(None, 1)[1].strip()
                   for line in (DEPLOY / "redis-replication.conf").read_text().splitlines()
                   if line.strip() and not line.startswith("#")}  # fmt: skip
    # Then a primary without an acknowledging replica stops taking writes (an asynchronous failover would
    # otherwise lose what it acknowledged meanwhile)...
    assert int(replication["min-replicas-to-write"]) >= 1
    assert 0 < int(replication["min-replicas-max-lag"]) <= 10
    # ...and the one-node Redis has no such directive: it would refuse every write
    for text in ((DEPLOY / "redis.conf").read_text(), _k8s_redis_conf()):
        assert "min-replicas-to-write" not in text
    # and the sentinel watches the group the settings name in the docs
    assert "sentinel monitor assistant-jobs " in (DEPLOY / "sentinel.conf").read_text()


def _k8s_redis_conf() -> str:
    conf = next(d for d in manifests() if d["kind"] == "ConfigMap" and "redis.conf" in d.get("data", {}))
    return str(conf["data"]["redis.conf"])


def test_autoscalers_watch_the_lists_of_the_queues_their_deployment_serves() -> None:
    # Given each KEDA ScaledObject and the Deployment it scales
    scaled = [d for d in manifests() if d["kind"] == "ScaledObject"]
    assert {d["spec"]["scaleTargetRef"]["name"] for d in scaled} == set(AUTOSCALED)
    for d in scaled:
        lists = {t["metadata"]["listName"] for t in d["spec"]["triggers"] if t["type"] == "redis"}
        # Then it reads the lengths of exactly those queues (Celery's Redis lists), and never scales to zero
        assert lists == queues_of(deployments()[d["spec"]["scaleTargetRef"]["name"]]["args"])
        assert d["spec"]["minReplicaCount"] >= 1


def test_redis_keeps_an_append_only_file_never_evicts_and_asks_for_a_password() -> None:
    # Given the Redis configuration compose mounts and the one the StatefulSet mounts
    k8s_conf = next(d for d in manifests() if d["kind"] == "ConfigMap" and "redis.conf" in d.get("data", {}))
    for text in ((DEPLOY / "redis.conf").read_text(), k8s_conf["data"]["redis.conf"]):
        directives = {line.split(None, 1)[0]: line.split(None, 1)[1] for line in text.splitlines()
                      if line.strip() and not line.lstrip().startswith("#")}  # fmt: skip
        # Then persistence is AOF fsynced every second, and a full Redis refuses writes instead of evicting
        assert (directives["appendonly"], directives["appendfsync"]) == ("yes", "everysec")
        assert directives["maxmemory-policy"] == "noeviction"
    assert "--requirepass" in compose_services(ANY_SECRET)["redis"].argv
    redis_set = next(d for d in manifests() if d["kind"] == "StatefulSet")
    assert "--requirepass" in redis_set["spec"]["template"]["spec"]["containers"][0]["args"]


def test_secrets_come_by_reference_and_beat_runs_twice() -> None:
    # Given every container of the manifests
    for name, container in deployments().items():
        for entry in container.get("env", []):
            # Then no secret is written into them: each comes from a Secret
            if entry["name"] in SECRET_NAMES:
                assert "secretKeyRef" in entry.get("valueFrom", {}), f"{name}: {entry['name']}"
    assert (
        next(d for d in manifests() if d.get("metadata", {}).get("name") == "beat")["spec"]["replicas"] == 2
    )
    assert compose_services(ANY_SECRET)["beat"].replicas == 2


def test_the_image_runs_as_a_non_root_user_with_ajobs_as_its_entrypoint() -> None:
    # Given the Dockerfile
    text = DOCKERFILE.read_text()
    stages = re.findall(r"^FROM\s+\S+\s+AS\s+(\S+)", text, re.MULTILINE)
    # Then the default target (the last stage) is the runtime, both final images drop root, and the
    # runtime's role is its command
    assert stages[-1] == "runtime" and "emulator" in stages
    assert re.findall(r"^USER\s+(\S+)", text, re.MULTILINE) == ["10001:10001", "10001:10001"]
    assert dockerfile_entrypoints()["runtime"] == ["ajobs"]
    assert dockerfile_entrypoints()["emulator"] == ["python", "-m", "emulator"]


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
def test_the_systemd_units_verify_clean() -> None:
    # Given the units pointed at this virtualenv; When systemd-analyze verifies them; Then it says nothing
    code, said = verify(Path(sys.executable).parent)
    assert code == 0, said


def test_deploy_smoke_says_plainly_when_no_container_engine_answers(tmp_path: Path) -> None:
    # Given a PATH where neither docker nor podman can be found
    done = subprocess.run(
        [sys.executable, str(DEPLOY.parent / "scripts" / "deploy_smoke.py")],
        env={"PATH": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    # Then it exits 2 with a message saying what it needs, before building anything
    assert done.returncode == 2
    assert "no container engine answers" in done.stderr and "make deploy-check" in done.stderr
