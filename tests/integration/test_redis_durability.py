"""A real worker on a Redis that persists nothing (no AOF, no save points) warns, or refuses to start."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from helpers import WorkerProcess

from devkit.redis_server import redis_server


@pytest.fixture
def forgetful() -> Iterator[dict[str, str]]:
    """A Redis with no AOF and no save points: a restart would lose everything. The worker's environment."""
    with redis_server(durable=False) as server:
        yield {"AJ_REDIS_URL": server.url}


def test_a_worker_warns_about_a_redis_that_persists_nothing_and_starts(
    worker: Callable[..., WorkerProcess], forgetful: dict[str, str]
) -> None:
    # Given a Redis started without AOF or save points, and no durability required
    # When a worker starts on it
    handle = worker(extra_env=forgetful)

    # Then it is ready, and its log says what is wrong and what to set, before it consumed anything
    log = handle.log.read_text(errors="replace")
    warning = log[: log.index("ready.")]
    assert "can lose jobs" in warning
    assert "it persists nothing" in warning and '"appendonly yes"' in warning
    assert "AJ_REQUIRE_DURABLE_REDIS=true" in warning
    assert warning.count("can lose jobs") == 1  # one Redis (store and broker), one warning


def test_a_worker_refuses_to_start_on_it_when_durability_is_required(
    worker: Callable[..., WorkerProcess], forgetful: dict[str, str]
) -> None:
    # Given the same kind of Redis, and AJ_REQUIRE_DURABLE_REDIS=true
    # When a worker starts on it
    handle = worker(extra_env={**forgetful, "AJ_REQUIRE_DURABLE_REDIS": "true"}, ready=False)

    # Then it exits with an error before it is ready, saying why in its log and on stderr
    assert handle.proc.wait(60) != 0
    log = handle.log.read_text(errors="replace")
    assert "ready." not in log
    assert "AJ_REQUIRE_DURABLE_REDIS is true: this worker refuses to start" in log
    output = handle.log.with_suffix(".out").read_text(errors="replace")
    assert "it persists nothing" in output
