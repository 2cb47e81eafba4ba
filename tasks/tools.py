"""Functions the worker runs itself when a run calls them: ``@tool("get_weather")``.

A run whose every pending call names a registered function (and whose request allows it) gets
its outputs from the worker, with no producer involved. A function takes the call's parsed JSON
arguments as keyword arguments and returns a string (anything else is sent as JSON).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

ToolFn = Callable[..., Any]

REGISTRY: dict[str, ToolFn] = {}
"""Registered functions by the name the model calls them by."""


def tool(name: str) -> Callable[[ToolFn], ToolFn]:
    """Register ``fn`` as the worker's answer to calls of function ``name``."""

    def register(fn: ToolFn) -> ToolFn:
        REGISTRY[name] = fn
        return fn

    return register


def can_answer(names: list[str]) -> bool:
    """True when every one of ``names`` has a registered function."""
    return bool(names) and all(n in REGISTRY for n in names)


def call(name: str, arguments: str) -> str:
    """Run the function registered as ``name`` with the call's JSON ``arguments``; its output as text."""
    kwargs = json.loads(arguments) if arguments.strip() else {}
    out = REGISTRY[name](**kwargs) if isinstance(kwargs, dict) else REGISTRY[name](kwargs)
    return out if isinstance(out, str) else json.dumps(out)
