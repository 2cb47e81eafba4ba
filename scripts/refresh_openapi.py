"""Refresh the vendored OpenAI API contract from a downloaded ``openapi.json``.

    python scripts/refresh_openapi.py PATH [--commit SHA --date YYYY-MM-DD]

Checks that PATH is an OpenAPI 3 document with ``paths`` and ``components.schemas``, copies it to
``vendor/openai-openapi/openapi.json`` and rewrites ``SOURCE.md``'s info.version, and its commit and date
when given. It takes a file already downloaded (from the repository ``SOURCE.md`` names): it fetches
nothing itself. Exit codes: 0 refreshed, 2 the file or an argument was refused (nothing changed).
"""

from __future__ import annotations

import argparse
import datetime
import json
import re
import shutil
import sys
from pathlib import Path
from typing import Any

VENDOR = Path(__file__).resolve().parent.parent / "vendor" / "openai-openapi"
"""Where the contract lives in the checkout, beside its LICENSE and SOURCE.md."""

COMMIT = re.compile(r"commit [0-9a-f]{7,40} \(\d{4}-\d{2}-\d{2}\)")
DESCRIPTION = "Refresh the vendored OpenAI API contract from a downloaded openapi.json."
VERSION = re.compile(r"\(info\.version [^)]*\)")


class Refused(Exception):
    """The given file or arguments cannot be vendored; the message says why."""


def check_document(path: Path) -> dict[str, Any]:
    """The parsed document at ``path``; raises `Refused` unless it is OpenAPI 3 with paths and schemas."""
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise Refused(f"{path}: not a readable JSON file ({exc})") from exc
    if not isinstance(document, dict) or not str(document.get("openapi", "")).startswith("3."):
        raise Refused(f"{path}: not an OpenAPI 3 document (no 'openapi': '3.x' at the top)")
    if not isinstance(document.get("paths"), dict) or not document["paths"]:
        raise Refused(f"{path}: has no paths")
    schemas = (document.get("components") or {}).get("schemas")
    if not isinstance(schemas, dict) or not schemas:
        raise Refused(f"{path}: has no components.schemas")
    return document


def rewrite_source(text: str, version: str, commit: str | None, date: str | None) -> str:
    """SOURCE.md's text with the document's version, and the commit and its date when given."""
    if not VERSION.search(text) or not COMMIT.search(text):
        raise Refused("SOURCE.md no longer says '(info.version X)' and 'commit SHA (DATE)': edit it by hand")
    text = VERSION.sub(f"(info.version {version})", text, count=1)
    if commit and date:
        text = COMMIT.sub(f"commit {commit} ({date})", text, count=1)
    return text


def _commit(value: str) -> str:
    if not re.fullmatch(r"[0-9a-f]{7,40}", value):
        raise argparse.ArgumentTypeError(f"{value!r} is not a git commit id (7-40 lowercase hex digits)")
    return value


def _date(value: str) -> str:
    try:
        return datetime.date.fromisoformat(value).isoformat()
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{value!r} is not a date (YYYY-MM-DD)") from exc


def refresh(source: Path, vendor: Path, commit: str | None, date: str | None) -> str:
    """Check ``source``, copy it into ``vendor`` and update SOURCE.md; a line saying what was done."""
    document = check_document(source)
    version = str(document.get("info", {}).get("version", "unknown"))
    notes = vendor / "SOURCE.md"
    text = rewrite_source(notes.read_text(encoding="utf-8"), version, commit, date)
    shutil.copyfile(source, vendor / "openapi.json")
    notes.write_text(text, encoding="utf-8")
    paths, schemas = len(document["paths"]), len(document["components"]["schemas"])
    recorded = f"recorded as commit {commit} ({date})" if commit else "SOURCE.md's commit and date unchanged"
    return f"vendored info.version {version}: {paths} paths, {schemas} schemas; {recorded}"


def main(argv: list[str] | None = None) -> int:
    """Parse the command line, refresh, and print what changed (or why nothing did)."""
    parser = argparse.ArgumentParser(prog="scripts/refresh_openapi.py", description=DESCRIPTION)
    parser.add_argument("path", type=Path, help="a downloaded openapi.json")
    parser.add_argument("--commit", type=_commit, help="the source repository's commit it came from")
    parser.add_argument("--date", type=_date, help="that commit's date, YYYY-MM-DD")
    parser.add_argument("--vendor-dir", type=Path, default=VENDOR, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if (args.commit is None) != (args.date is None):
        parser.error("--commit and --date go together")
    try:
        print(refresh(args.path, args.vendor_dir, args.commit, args.date))
    except Refused as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
