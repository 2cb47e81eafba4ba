"""Every way the settings can be refused, through the real entry points: the variable is named, and no
secret (API key, Flower password, webhook secret, a Redis or broker URL's password) is ever printed.

Each secret below contains ``-SECRET``, so one search of the output finds any of them, whole or in part
(a variable's name, ``AJ_WEBHOOK_SECRET``, holds ``_SECRET``, not ``-SECRET``).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import ROOT
from pydantic import ValidationError

from worker.settings import Settings, describe, mask_url_password, mask_url_passwords

# Valid secrets, present in every run: a refusal elsewhere must not print them either.
SECRETS = {
    "OPENAI_API_KEY": "sk-SECRET-0123456789abcdef",
    "AJ_FLOWER_USER": "admin",
    "AJ_FLOWER_PASSWORD": "pw-SECRET-hunter2",
    "OPENAI_WEBHOOK_SECRET": "wh-SECRET-raw",  # the openai package also takes a secret without whsec_
    "AJ_REDIS_URL": "redis://:rpw-SECRET@127.0.0.1:1/0",
    "AJ_BROKER_URL": "redis://user:bpw-SECRET@127.0.0.1:1/1",
}

# One refused value for each setting that can be refused, all set at once: pydantic reports every field
# in one pass. The secret settings' own bad values hold a secret too.
BAD_VALUES = {
    "AJ_REDIS_URL": "http://:rpw-SECRET@localhost:6379/0",
    "AJ_BROKER_URL": "https://user:bpw-SECRET@localhost:6379/1",
    "AJ_REDIS_TLS": "maybe",
    "AJ_REDIS_TLS_CA_FILE": "/nonexistent/ca.pem",
    "AJ_REDIS_TLS_CERT_FILE": "/nonexistent/client.pem",
    "AJ_REDIS_TLS_KEY_FILE": "/nonexistent/client.key",
    "AJ_REDIS_TLS_VERIFY": "sometimes",
    "AJ_BROKER_QUORUM_QUEUES": "maybe",
    "AJ_POLL_KINDS": '["fetch"]',
    "AJ_RESULT_TTL": "0",
    "AJ_IDEMPOTENCY_TTL": "-1",
    "AJ_EVENTS_MAXLEN": "10",
    "AJ_QUEUE_RUNS_ACTIVE": "",
    "AJ_QUEUE_RUNS": "",
    "AJ_QUEUE_INDEXING": "",
    "AJ_QUEUE_MAINTENANCE": "",
    "AJ_DEFAULT_DEADLINE": "0",
    "AJ_POLL_FIRST": "0",
    "AJ_POLL_FACTOR": "fast",
    "AJ_POLL_CAP": "-1",
    "AJ_POLL_JITTER": "2",
    "AJ_POLL_LEASE": "0",
    "AJ_POLL_CONCURRENCY": "0",
    "AJ_START_CONCURRENCY": "0",
    "AJ_RUN_BACKEND": "chat",
    "AJ_MAX_RETRIES": "101",
    "AJ_VISIBILITY_TIMEOUT": "1",
    "AJ_TASK_SOFT_TIME_LIMIT": "0",
    "AJ_TASK_TIME_LIMIT": "0",
    "OPENAI_API_KEY": "sk-SECRET-with a space",
    "AJ_TOOL_MODULES": "[1]",
    "AJ_OPENAI_TIMEOUT": "0",
    "AJ_BATCH_SIZE": "2001",
    "AJ_UPLOAD_CONCURRENCY": "65",
    "AJ_THREAD_IDLE_S": "0",
    "AJ_STORE_IDLE_S": "0",
    "AJ_CLEANUP_DELETES_PER_S": "0",
    "AJ_CLEANUP_INCLUDE_UNMANAGED": "maybe",
    "AJ_SWEEP_THREADS_S": "-1",
    "AJ_SWEEP_STORES_S": "-1",
    "AJ_SWEEP_FILES_S": "-1",
    "AJ_SWEEP_JOBS_S": "-1",
    "AJ_BEAT_MAX_INTERVAL": "0",
    "AJ_FLOWER_USER": "ad:min",
    "AJ_FLOWER_PASSWORD": "pw-SECRET,second",
    "AJ_FLOWER_DEV": "maybe",
    "AJ_FLOWER_PORT": "0",
    "AJ_METRICS_PORT": "70000",
    "OPENAI_WEBHOOK_SECRET": "whsec_!!wh-SECRET",
    "AJ_REQUIRE_DURABLE_REDIS": "maybe",
    "AJ_OUTBOX_GRACE": "0",
    "AJ_STALL_AFTER": "0",
    "AJ_OWNERLESS_AFTER": "-1",
    "AJ_WATCHDOG_EVERY": "0",
    "AJ_MAX_REDRIVES": "101",
    "AJ_WEBHOOKS": "maybe",
    "AJ_POLL_PROCESS": "maybe",
    "AJ_WEBHOOK_PORT": "0",
    "AJ_WEBHOOK_PATH": "no-leading-slash",
    "AJ_WEBHOOK_SAFETY_POLL": "0",
    "AJ_WEBHOOK_TOLERANCE": "0",
    "AJ_WEBHOOK_DEDUPE_TTL": "0",
    "AJ_QUEUED_STUCK_AFTER": "0",
}
# Settings any string satisfies: there is no value to refuse.
ACCEPTS_ANY_STRING = {
    "openai_base_url",
    "flower_address",
    "metrics_address",
    "webhook_address",
    "redis_sentinel_master",
    "redis_sentinel_password",
}
# The variable BAD_VALUES sets for a setting read under another name.
ALIASES = {"OPENAI_API_KEY": "openai_api_key", "OPENAI_WEBHOOK_SECRET": "webhook_secret"}

# Each scenario: the variables it sets over SECRETS, and the variables its output must name.
SCENARIOS = {
    "every field refused": (BAD_VALUES, list(BAD_VALUES)),
    "task time limit not below the visibility timeout": (
        {"AJ_TASK_TIME_LIMIT": "40"},
        ["AJ_TASK_TIME_LIMIT", "AJ_VISIBILITY_TIMEOUT"],
    ),
    "soft time limit not below the hard one": (
        {"AJ_TASK_SOFT_TIME_LIMIT": "25", "AJ_TASK_TIME_LIMIT": "25"},
        ["AJ_TASK_SOFT_TIME_LIMIT", "AJ_TASK_TIME_LIMIT"],
    ),
    "redis url of another scheme, with a password": (
        {"AJ_REDIS_URL": "https://:rpw-SECRET@cache.example:6380/0"},
        ["AJ_REDIS_URL"],
    ),
    "list setting that is not JSON": ({"AJ_TOOL_MODULES": "[sk-SECRET"}, ["AJ_TOOL_MODULES"]),
    "sentinel url without its group's name": (
        {"AJ_REDIS_URL": "sentinel://:rpw-SECRET@127.0.0.1:26379/0"},
        ["AJ_REDIS_SENTINEL_MASTER"],
    ),
}

ENTRY_POINTS = {
    "ajobs list": [str(Path(sys.executable).with_name("ajobs")), "list"],
    "celery worker": [sys.executable, "-m", "celery", "-A", "worker.app", "worker"],
    "flower": [sys.executable, "-m", "worker.flower"],
}


def clean_environment() -> dict[str, str]:
    """This process's environment without any setting of ours or of the openai package."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(("AJ_", "OPENAI_", "FLOWER_"))}
    return {**base, "PYTHONPATH": str(ROOT)}


def test_given_the_settings_when_listed_then_every_refusable_one_has_a_bad_value_here() -> None:
    covered = {ALIASES.get(name, name.removeprefix("AJ_").lower()) for name in BAD_VALUES}

    assert covered | ACCEPTS_ANY_STRING == set(Settings.model_fields)


# Every scenario through the cheapest entry point, and every entry point through the scenarios that reach
# each kind of check (field by field, across fields, the Redis URL's): the refusal is one `Settings` and one
# `describe` whichever process reads it; what differs by entry point is how it is caught and printed.
PAIRS = [(scenario, "ajobs list") for scenario in SCENARIOS] + [
    (scenario, entry_point)
    for entry_point in ENTRY_POINTS
    if entry_point != "ajobs list"
    for scenario in (
        "every field refused",
        "task time limit not below the visibility timeout",
        "sentinel url without its group's name",
    )
]


@pytest.mark.parametrize(("scenario", "entry_point"), PAIRS)
def test_given_a_refused_setting_when_an_entry_point_starts_then_it_names_the_variable_and_no_secret(
    scenario: str, entry_point: str, tmp_path: Path
) -> None:
    overrides, named = SCENARIOS[scenario]
    env = {**clean_environment(), **SECRETS, **overrides}

    # A directory without a .env, so only the environment above is read.
    proc = subprocess.run(
        ENTRY_POINTS[entry_point], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60
    )

    output = " ".join((proc.stdout + proc.stderr).split())  # the CLI wraps long lines
    assert proc.returncode != 0, output
    assert "bad configuration" in output
    assert "-SECRET" not in output
    assert "Traceback" not in output
    missing = [name for name in named if not re.search(rf"\b{name}\b", output)]
    assert missing == [], output


def test_given_a_redis_url_of_another_scheme_when_described_then_it_is_shown_with_its_password_masked(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AJ_REDIS_URL", "https://:rpw-SECRET@cache.example:6380/0")

    with pytest.raises(ValidationError) as caught:
        Settings(_env_file=None)

    assert describe(caught.value) == (
        "bad configuration:\n"
        "  AJ_REDIS_URL: must start with redis://, rediss://, unix:// or sentinel:// "
        "(got 'https://:****@cache.example:6380/0')"
    )


def test_given_a_refused_secret_when_the_raw_validation_error_is_printed_then_it_shows_no_value(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-SECRET-with a space")
    monkeypatch.setenv("AJ_REDIS_URL", "http://:rpw-SECRET@localhost:6379/0")

    with pytest.raises(ValidationError) as caught:
        Settings(_env_file=None)

    assert "-SECRET" not in str(caught.value)
    assert "OPENAI_API_KEY" in str(caught.value)


@pytest.mark.parametrize(
    ("url", "masked"),
    [
        ("redis://:pw@host:6379/0", "redis://:****@host:6379/0"),
        ("amqp://user:p@ss@host//", "amqp://user:****@host//"),
        ("redis://:it's a pw@host", "redis://:****@host"),
        ("redis://token@host", "redis://****@host"),
        ("redis://host:6379/0", "redis://host:6379/0"),
        ("unix:///run/redis.sock", "unix:///run/redis.sock"),
    ],
)
def test_given_a_url_with_a_password_when_masked_then_no_part_of_the_password_is_left(
    url: str, masked: str
) -> None:
    assert mask_url_password(url) == masked


def test_given_text_with_several_urls_when_masked_then_each_password_is_masked() -> None:
    text = "got 'rediss://u:pw@h' and sentinel://:a@h1:26379;sentinel://:b@h2:26379"

    assert mask_url_passwords(text) == "got 'rediss://u:****@h' and sentinel://:****@h2:26379"
