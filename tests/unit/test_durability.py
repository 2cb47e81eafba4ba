"""Judging a Redis server's durability from its INFO, and what a worker does with the verdict."""

from __future__ import annotations

import logging
from typing import Any

import pytest
import redis

from worker import durability
from worker.durability import Assessment, assess
from worker.settings import ConfigurationError, Settings, get_settings

NO_AOF: dict[str, Any] = {"aof_enabled": 0, "rdb_saves": 0, "rdb_last_bgsave_time_sec": -1}
"""INFO persistence of a server without AOF that has taken no snapshot since it started."""
KEEPS: dict[str, Any] = {"maxmemory_policy": "noeviction"}


def test_aof_on_and_noeviction_is_durable() -> None:
    assert assess({**NO_AOF, "aof_enabled": 1}, KEEPS, save="") == Assessment()


def test_rdb_save_points_alone_are_durable() -> None:
    assert assess(NO_AOF, KEEPS, save="3600 1 300 100") == Assessment()


def test_no_aof_and_no_save_points_persist_nothing() -> None:
    found = assess(NO_AOF, KEEPS, save="")
    assert found.problems == (durability.NOT_PERSISTED,)
    assert "appendonly yes" in found.problems[0]


@pytest.mark.parametrize("snapshot", [{"rdb_saves": 2}, {"rdb_last_bgsave_time_sec": 0}])
def test_without_config_a_snapshot_since_start_shows_rdb_is_on(snapshot: dict[str, Any]) -> None:
    assert assess({**NO_AOF, **snapshot}, KEEPS, save=None) == Assessment()


def test_without_config_and_without_a_snapshot_rdb_is_unknown_not_wrong() -> None:
    found = assess(NO_AOF, KEEPS, save=None)
    assert found.problems == ()
    assert "RDB snapshots" in found.unknown[0]


@pytest.mark.parametrize("policy", ["allkeys-lru", "volatile-ttl", "allkeys-random"])
def test_an_eviction_policy_is_a_problem(policy: str) -> None:
    found = assess({**NO_AOF, "aof_enabled": 1}, {"maxmemory_policy": policy})
    assert len(found.problems) == 1
    assert policy in found.problems[0] and "maxmemory-policy noeviction" in found.problems[0]


def test_both_problems_are_named() -> None:
    assert len(assess(NO_AOF, {"maxmemory_policy": "allkeys-lru"}, save="").problems) == 2


@pytest.mark.parametrize(
    ("persistence", "memory", "unknown"),
    [
        (None, None, ["INFO persistence failed", "INFO memory failed"]),
        ({}, {}, ["has no aof_enabled", "has no maxmemory_policy"]),
        ({"aof_enabled": 1}, None, ["INFO memory failed"]),
    ],
)
def test_a_server_that_will_not_say_is_unknown(
    persistence: dict[str, Any] | None, memory: dict[str, Any] | None, unknown: list[str]
) -> None:
    found = assess(persistence, memory)
    assert found.problems == ()
    assert len(found.unknown) == len(unknown)
    assert all(why in said for why, said in zip(unknown, found.unknown, strict=True))


def test_problems_warn_with_what_to_set(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="worker.durability"):
        durability.report("redis://r:6379/0 (the job store)", assess(NO_AOF, KEEPS, save=""), required=False)
    [record] = caplog.records
    text = record.getMessage()
    assert record.levelno == logging.WARNING and len(text.splitlines()) == 3
    assert "redis://r:6379/0 (the job store) can lose jobs" in text
    assert "AJ_REQUIRE_DURABLE_REDIS=true" in text


def test_problems_refuse_to_start_when_required() -> None:
    with pytest.raises(ConfigurationError, match="refuses to start") as refused:
        durability.report("redis://r:6379/0", assess(NO_AOF, KEEPS, save=""), required=True)
    assert "appendonly yes" in str(refused.value)


def test_a_server_that_will_not_say_warns_once_and_goes_on_even_when_required(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING, logger="worker.durability"):
        durability.report("redis://r:6379/0", assess(None, None), required=True)
    [record] = caplog.records
    assert "did not say" in record.getMessage()


def test_the_setting_is_read_and_a_bad_value_names_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AJ_REQUIRE_DURABLE_REDIS", raising=False)
    assert Settings().require_durable_redis is False
    monkeypatch.setenv("AJ_REQUIRE_DURABLE_REDIS", "true")
    assert Settings().require_durable_redis is True
    monkeypatch.setenv("AJ_REQUIRE_DURABLE_REDIS", "sometimes")
    get_settings.cache_clear()
    with pytest.raises(ConfigurationError, match="AJ_REQUIRE_DURABLE_REDIS"):
        get_settings()
    get_settings.cache_clear()


def test_a_real_server_is_read(redis_client: redis.Redis) -> None:
    # The test Redis runs as the README asks: --appendonly yes --maxmemory-policy noeviction, no RDB
    persistence, memory, save = durability.read_server(redis_client)
    assert assess(persistence, memory, save) == Assessment()
    assert (str(persistence["aof_enabled"]), memory["maxmemory_policy"], save) == ("1", "noeviction", "")


def test_a_server_still_loading_its_data_is_judged_once_it_has_loaded(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given a Redis replaying its append-only file after a restart: it reports AOF off until it is done
    class Loading:
        reads = 0

        def info(self, section: str) -> dict[str, object]:
            if section == "memory":
                return {"maxmemory_policy": "noeviction"}
            self.reads += 1
            return {"loading": 1, "aof_enabled": 0} if self.reads < 3 else {"loading": 0, "aof_enabled": 1}

        def config_get(self, name: str) -> dict[str, str]:
            return {"save": ""}

    monkeypatch.setattr(durability.time, "sleep", lambda _: None)
    # When a starting worker reads it
    persistence, memory, save = durability.read_server(Loading())  # type: ignore[arg-type]
    # Then it waited for the load to finish, and finds nothing wrong
    assert persistence is not None and persistence["loading"] == 0
    assert assess(persistence, memory, save) == Assessment()
