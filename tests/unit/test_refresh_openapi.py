"""scripts/refresh_openapi.py: a downloaded contract is checked, vendored and recorded, or refused whole."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import OPENAPI, ROOT

SCRIPT = ROOT / "scripts" / "refresh_openapi.py"
NEW_COMMIT = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture
def vendor(tmp_path: Path) -> Path:
    """A copy of the vendored contract directory (openapi.json, LICENSE, SOURCE.md) to refresh."""
    copy = tmp_path / "vendor"
    shutil.copytree(OPENAPI.parent, copy)
    return copy


def refresh(vendor: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args, "--vendor-dir", str(vendor)],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_a_valid_document_is_vendored_and_its_commit_date_and_version_recorded(
    vendor: Path, tmp_path: Path
) -> None:
    # Given a downloaded OpenAPI 3 document of a newer version
    download = tmp_path / "openapi.json"
    download.write_text(json.dumps({
        "openapi": "3.1.0", "info": {"title": "OpenAI API", "version": "2.4.0"},
        "paths": {"/responses": {}}, "components": {"schemas": {"Response": {"type": "object"}}},
    }))  # fmt: skip

    # When it is refreshed with its commit and date
    done = refresh(vendor, str(download), "--commit", NEW_COMMIT, "--date", "2026-11-02")

    # Then the vendored file is that document, and SOURCE.md names its version, commit and date
    assert done.returncode == 0, done.stderr
    assert (vendor / "openapi.json").read_bytes() == download.read_bytes()
    source = (vendor / "SOURCE.md").read_text()
    assert "(info.version 2.4.0)" in source
    assert f"openai/openai-openapi, commit {NEW_COMMIT} (2026-11-02)" in source
    assert "f85dbe2" not in source and "2.3.0" not in source


@pytest.mark.parametrize(
    ("document", "named"),
    [
        ({"swagger": "2.0", "paths": {"/x": {}}}, "OpenAPI 3"),
        ({"openapi": "3.1.0", "paths": {}, "components": {"schemas": {"A": {}}}}, "paths"),
        ({"openapi": "3.1.0", "paths": {"/x": {}}}, "components.schemas"),
    ],
    ids=["swagger 2", "no paths", "no schemas"],
)
def test_a_document_that_is_not_the_contract_is_refused_and_nothing_changes(
    vendor: Path, tmp_path: Path, document: dict[str, object], named: str
) -> None:
    # Given a download that is not an OpenAPI 3 document with paths and schemas
    download = tmp_path / "openapi.json"
    download.write_text(json.dumps(document))
    before = {p.name: p.read_bytes() for p in vendor.iterdir()}

    # When it is refreshed
    done = refresh(vendor, str(download), "--commit", NEW_COMMIT, "--date", "2026-11-02")

    # Then it is refused, naming what is missing, and the vendored files are as they were
    assert done.returncode == 2
    assert named in done.stderr
    assert {p.name: p.read_bytes() for p in vendor.iterdir()} == before
