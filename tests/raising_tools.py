"""A worker tool module for tests: ``get_weather`` raises, as a buggy tool would."""

from __future__ import annotations

from tasks.tools import tool


@tool("get_weather")
def get_weather(**arguments: object) -> str:
    """Always fails."""
    raise RuntimeError("the weather service is down")
