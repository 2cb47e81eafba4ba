"""The repository explains itself: no tracked file points outside it or at one machine's paths."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from helpers import ROOT

OUTSIDE = ("../" + "shared", "/" + "work/", "DESIGN" + ".md")
"""What a reference to a file outside the repository, or to a path of one machine, looks like here (each
spelt in two pieces, so this file does not name them itself and is searched like any other)."""


def tracked_files() -> list[Path]:
    """The files git tracks in this checkout, with the ones staged but not yet committed."""
    listed = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True, timeout=60)
    return [ROOT / name for name in listed.stdout.decode().split("\0") if name]


@pytest.mark.skipif(shutil.which("git") is None or not (ROOT / ".git").exists(), reason="not a git checkout")
def test_no_tracked_text_file_names_a_path_outside_the_repository() -> None:
    # Given every tracked text file
    files = [p for p in tracked_files() if p.is_file()]
    assert len(files) > 100

    # When we look for references outside the repository
    found = []
    for path in files:
        data = path.read_bytes()
        if b"\0" in data:
            continue  # binary (the plots)
        text = data.decode(errors="replace")
        found += [f"{path.relative_to(ROOT)}: {pattern}" for pattern in OUTSIDE if pattern in text]

    # Then there are none
    assert found == []
