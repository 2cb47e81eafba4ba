"""Example worker functions, used by the demo and the tests.

Enable with ``AJ_TOOL_MODULES='["devkit.example_tools"]'``.
"""

from __future__ import annotations

from tasks.tools import tool


@tool("get_weather")
def get_weather(**arguments: object) -> str:
    """A fixed forecast, so a run's answer shows the worker answered its call."""
    return "sunny, 21 C"
