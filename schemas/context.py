"""The validation context of a request read back from the store."""

from typing import Any

STORED: dict[str, bool] = {"stored": True}
"""Validation context for a request read back from a job record: it passed every rule when it was
submitted, so the rules (characters, sizes, backends, cross-field checks) are not run again on each read;
its types still are."""


def is_stored(info: Any) -> bool:
    """Whether a validator runs on a request read back from the store (see `STORED`)."""
    context = getattr(info, "context", None)
    return isinstance(context, dict) and bool(context.get("stored"))
