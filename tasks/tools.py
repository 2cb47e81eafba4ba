"""Functions the worker runs itself when a run calls them: mark one with ``@tool("get_weather")`` in a
module named by ``AJ_TOOL_MODULES``.

A run whose every pending call names such a function (and whose request allows it) gets its outputs from
the worker, with no producer involved. A function takes the call's parsed JSON arguments as keyword
arguments and returns a string (anything else is sent as JSON). The decorator only marks the function;
the worker collects the marked functions of the configured modules at start (`Tools.from_modules`), so
what a worker answers is what its settings name, not whatever happened to be imported.
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Callable, Iterable
from typing import Any

ToolFn = Callable[..., Any]

_MARK = "__aj_tool__"


def tool(name: str) -> Callable[[ToolFn], ToolFn]:
    """Mark ``fn`` as the worker's answer to calls of function ``name``."""

    def mark(fn: ToolFn) -> ToolFn:
        setattr(fn, _MARK, name)
        return fn

    return mark


class Tools:
    """The functions a worker answers tool calls with, by the name the model calls them by."""

    def __init__(self, functions: dict[str, ToolFn] | None = None):
        self.functions = dict(functions or {})

    @classmethod
    def from_modules(cls, modules: Iterable[str]) -> Tools:
        """Import ``modules`` and collect their ``@tool`` functions; a name given twice is an error."""
        found: dict[str, ToolFn] = {}
        for module_name in modules:
            module = importlib.import_module(module_name)
            for value in vars(module).values():
                name = getattr(value, _MARK, None)
                if not isinstance(name, str) or not callable(value):
                    continue
                if name in found and found[name] is not value:
                    raise ValueError(f"tool {name!r} is defined twice (in AJ_TOOL_MODULES: {module_name})")
                found[name] = value
        return cls(found)

    def can_answer(self, names: list[str]) -> bool:
        """True when every one of ``names`` has a function."""
        return bool(names) and all(n in self.functions for n in names)

    def call(self, name: str, arguments: str) -> str:
        """Run the function for ``name`` with the call's JSON ``arguments``; its output as text."""
        kwargs = json.loads(arguments) if arguments.strip() else {}
        fn = self.functions[name]
        out = fn(**kwargs) if isinstance(kwargs, dict) else fn(kwargs)
        return out if isinstance(out, str) else json.dumps(out)
