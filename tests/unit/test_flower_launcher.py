"""The Flower launcher: basic auth from the settings, and no auth-less Flower another machine can reach."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import ROOT

from worker import flower
from worker.settings import ConfigurationError, Settings, get_settings


def settings(**values: object) -> Settings:
    """Settings from `values` alone: no credentials unless given, and no .env file."""
    return Settings(_env_file=None, **{"flower_user": None, "flower_password": None, **values})


@pytest.mark.parametrize(
    "address", ["0.0.0.0", "::", "", "192.168.1.20", "flower.example.com", "127.0.0.1.nip.io"]
)
def test_given_the_dev_flag_and_a_reachable_address_when_launched_then_flower_is_refused(
    address: str,
) -> None:
    with pytest.raises(ConfigurationError) as caught:
        flower.flower_env(settings(flower_dev=True, flower_address=address), {})

    message = str(caught.value)
    assert "\n" not in message
    assert "AJ_FLOWER_DEV=1" in message and "AJ_FLOWER_ADDRESS" in message
    assert "AJ_FLOWER_USER" in message and "AJ_FLOWER_PASSWORD" in message
    assert repr(address) in message


@pytest.mark.parametrize("address", ["127.0.0.1", "127.0.0.2", "::1", "[::1]", "localhost", "LOCALHOST"])
def test_given_the_dev_flag_and_a_loopback_address_when_launched_then_flower_runs_without_auth_and_says_so(
    address: str,
) -> None:
    s = settings(flower_dev=True, flower_address=address, flower_port=5599)

    env = flower.flower_env(s, {"PATH": "/bin", "FLOWER_BASIC_AUTH": "stale:auth"})

    assert env == {"PATH": "/bin"}
    assert flower.dev_warning(s) == (
        f"warning: Flower runs without auth (AJ_FLOWER_DEV=1) on {address}:5599; "
        "anyone with a shell on this machine can cancel tasks and shut workers down"
    )


def test_given_credentials_when_launched_on_any_address_then_flower_gets_basic_auth_and_no_warning() -> None:
    s = settings(flower_user="admin", flower_password="pw", flower_address="0.0.0.0", flower_dev=True)

    env = flower.flower_env(s, {})

    assert env == {"FLOWER_BASIC_AUTH": "admin:pw"}
    assert flower.dev_warning(s) is None


def test_given_no_credentials_and_no_dev_flag_when_launched_then_the_settings_are_named() -> None:
    with pytest.raises(ConfigurationError) as caught:
        flower.flower_env(settings(flower_address="127.0.0.1"), {})

    assert "AJ_FLOWER_USER" in str(caught.value) and "AJ_FLOWER_DEV=1" in str(caught.value)


def test_given_the_dev_flag_on_loopback_when_main_runs_then_the_warning_line_is_printed_before_flower_starts(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in ("AJ_FLOWER_USER", "AJ_FLOWER_PASSWORD"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AJ_FLOWER_DEV", "1")
    monkeypatch.setenv("AJ_FLOWER_ADDRESS", "::1")
    started: list[list[str]] = []
    monkeypatch.setattr(flower.os, "execve", lambda path, argv, env: started.append(argv))
    get_settings.cache_clear()

    try:
        flower.main()
    finally:
        get_settings.cache_clear()

    assert capsys.readouterr().err.startswith("warning: Flower runs without auth (AJ_FLOWER_DEV=1) on ::1:")
    assert "--address=::1" in started[0]


def test_given_the_dev_flag_on_all_interfaces_when_started_as_a_process_then_it_exits_with_one_line(
    tmp_path: Path,
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AJ_", "OPENAI_", "FLOWER_"))}
    env.update({"PYTHONPATH": str(ROOT), "AJ_FLOWER_DEV": "1", "AJ_FLOWER_ADDRESS": "0.0.0.0"})

    proc = subprocess.run(
        [sys.executable, "-m", "worker.flower"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert proc.returncode == 1
    assert proc.stdout == ""
    assert proc.stderr.count("\n") == 1
    assert proc.stderr.startswith(
        "AJ_FLOWER_DEV=1 serves Flower without auth only on a loopback AJ_FLOWER_ADDRESS"
    )
