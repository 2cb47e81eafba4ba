"""The wheel holds the runtime only, and installing it pulls in no development dependency."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from email.parser import Parser
from importlib.util import find_spec

import pytest
from helpers import ROOT
from packaging.requirements import Requirement

RUNTIME_PACKAGES = {"schemas", "tasks", "worker"}
EMULATOR_ONLY = {"httptools", "python-multipart", "starlette", "uvicorn"}
# What never belongs in a build's source: environments, caches, earlier builds, benchmark output.
NOT_SOURCE = shutil.ignore_patterns(
    ".git", ".venv", "*cache*", "*.egg-info", "build", "dist", "results", ".demo-logs", "__pycache__"
)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> zipfile.ZipFile:
    """A wheel built from a copy of the checkout (the build writes into its source tree)."""
    tmp = tmp_path_factory.mktemp("wheel")
    source, out = tmp / "source", tmp / "dist"
    shutil.copytree(ROOT, source, ignore=NOT_SOURCE)
    # uv (which make installs) reuses its cached setuptools: about 2 s here against pip's fresh download.
    if find_spec("uv"):
        cmd = [sys.executable, "-m", "uv", "build", "--wheel", "--out-dir", str(out), str(source)]
    else:
        cmd = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--wheel-dir", str(out), str(source)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    (built,) = out.glob("*.whl")
    return zipfile.ZipFile(built)


def _metadata(wheel: zipfile.ZipFile, name: str) -> str:
    (path,) = [n for n in wheel.namelist() if n.endswith(f".dist-info/{name}")]
    return wheel.read(path).decode()


def test_the_wheel_holds_only_the_runtime_packages(wheel: zipfile.ZipFile) -> None:
    # Given a wheel built from the repository
    # When we list its top-level entries
    top = {name.split("/")[0] for name in wheel.namelist() if not name.split("/")[0].endswith(".dist-info")}

    # Then it holds schemas, worker and tasks: no emulator, bench, tests or devkit
    assert top == RUNTIME_PACKAGES
    assert not {"emulator", "bench", "tests", "devkit"} & top
    # ...and its ajobs command points into them
    assert "ajobs = worker.cli:main" in _metadata(wheel, "entry_points.txt")


def _extra(requirement: Requirement) -> str | None:
    """The extra a requirement belongs to, None for one every install pulls in."""
    marker = str(requirement.marker or "")
    return marker.split('extra == "')[1].split('"')[0] if 'extra == "' in marker else None


def test_installing_the_wheel_pulls_in_no_emulator_dependency(wheel: zipfile.ZipFile) -> None:
    # Given the wheel's declared requirements
    lines = Parser().parsestr(_metadata(wheel, "METADATA")).get_all("Requires-Dist") or []
    requires = [Requirement(line) for line in lines]
    everyone = {r.name for r in requires if _extra(r) is None}

    # Then the emulator's server stack comes only with the emulator extra
    assert not everyone & EMULATOR_ONLY
    assert {r.name for r in requires if _extra(r) == "emulator"} == EMULATOR_ONLY
    # ...while what the worker imports is declared for every install (uvloop where it builds)
    assert {"celery", "openai", "httpx2", "aiohttp", "uvloop"} <= everyone
    (uvloop,) = [r for r in requires if r.name == "uvloop"]
    assert str(uvloop.marker) == 'sys_platform != "win32"'
