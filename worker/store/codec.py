"""What every store module reads back from Redis: replies as text."""

from __future__ import annotations

from typing import Any


def text(value: bytes | str | Any) -> str:
    """A Redis reply (bytes, or already text) as ``str``."""
    return value.decode() if isinstance(value, bytes) else str(value)
