"""The CLI's validation and exit codes, and settings that stop start-up with a clear message."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import redis
from helpers import written_keys
from pydantic import ValidationError

from worker.client import Jobs
from worker.settings import ConfigurationError, Settings, get_settings


def ajobs(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "worker.cli", *args], env=env, capture_output=True, text=True, timeout=60
    )


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["--assistant", "asst_1", "--body", "-"], "colour"),
        (["--assistant", "asst_1", *[a for i in range(17) for a in ("--metadata", f"k{i}=v")]], "metadata"),
        (["--assistant", ""], "assistant_id"),
    ],
    ids=["unknown field", "17 metadata pairs", "empty assistant id"],
)
def test_bad_run_input_names_the_field_exits_2_and_leaves_no_trace(
    env: dict[str, str], redis_client: redis.Redis, args: list[str], named: str
) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "worker.cli", "submit", "run", "-m", "hi", *args],
        env=env,
        input=json.dumps({"colour": "red"}),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2, proc.stderr
    assert named in proc.stderr
    assert written_keys(redis_client) == set()


def test_a_control_character_in_a_path_is_refused_at_submission_naming_the_path(
    env: dict[str, str], redis_client: redis.Redis
) -> None:
    proc = ajobs(env, "submit", "index", "--store", "vs_1", "docs/a\x1b[2J.md")

    assert proc.returncode == 2, proc.stderr
    assert "paths[0]: character '\\x1b' at index 6; control characters are refused" in proc.stderr
    assert written_keys(redis_client) == set()


def test_a_nul_in_a_path_is_refused_by_the_producer_client_and_no_job_is_written(
    jobs: Jobs, redis_client: redis.Redis
) -> None:
    with pytest.raises(ValidationError) as caught:
        jobs.submit({"kind": "index", "vector_store_id": "vs_1", "paths": ["docs/a\x00.md"]})

    assert [error["loc"] for error in caught.value.errors()] == [("index", "paths", 0)]
    assert "NUL is refused" in str(caught.value)
    assert written_keys(redis_client) == set()


def test_submit_prints_a_job_id_and_status_reads_it_back(
    env: dict[str, str], redis_client: redis.Redis
) -> None:
    submitted = ajobs(env, "submit", "run", "--model", "gpt-4o", "-m", "hello", "--json")
    assert submitted.returncode == 0, submitted.stderr
    job_id = json.loads(submitted.stdout)["id"]
    shown = ajobs(env, "status", job_id, "--json")
    assert json.loads(shown.stdout)["status"] == "queued"
    missing = ajobs(env, "status", "job_nope")
    assert missing.returncode == 2 and "no job job_nope" in missing.stderr


def test_schema_prints_the_request_schemas(env: dict[str, str]) -> None:
    proc = ajobs(env, "schema")
    assert {"RunRequest", "VectorStoreBatchRequest", "CleanupRequest"} <= set(json.loads(proc.stdout))


def test_a_bad_setting_names_the_variable_and_what_it_accepts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AJ_POLL_FACTOR", "fast")
    get_settings.cache_clear()
    with pytest.raises(ConfigurationError) as caught:
        get_settings()
    get_settings.cache_clear()
    assert "AJ_POLL_FACTOR" in str(caught.value) and "number" in str(caught.value)


def test_the_api_key_is_secret_and_read_like_the_openai_package(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-secret-123")
    settings = Settings()
    assert settings.openai_api_key is not None
    assert settings.openai_api_key.get_secret_value() == "sk-secret-123"
    assert "sk-secret-123" not in repr(settings) and "sk-secret-123" not in settings.model_dump_json()


def test_broker_defaults_to_the_redis_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AJ_REDIS_URL", "redis://example:6379/3")
    assert Settings().broker == "redis://example:6379/3"
