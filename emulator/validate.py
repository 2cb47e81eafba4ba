"""Request field checks that answer like the API: 400 invalid_request_error naming the param."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from emulator.errors import bad_request

MAX_METADATA_PAIRS = 16
MAX_METADATA_KEY = 64
MAX_METADATA_VALUE = 512
TOOL_TYPES = {"code_interpreter", "file_search", "function"}


def _type_error(param: str, expected: str, value: Any) -> Exception:
    return bad_request(
        f"Invalid type for '{param}': expected {expected}, but got {type(value).__name__} instead.",
        param=param,
        code="invalid_type",
    )


def required(body: Mapping[str, Any], name: str) -> Any:
    """The value of a required field, or the API's "Missing required parameter" 400."""
    if name not in body or body[name] is None:
        raise bad_request(
            f"Missing required parameter: '{name}'.", param=name, code="missing_required_parameter"
        )
    return body[name]


def string(body: Mapping[str, Any], name: str, *, required_: bool = False, default: Any = None) -> Any:
    """A string field (optional unless `required_`)."""
    value = required(body, name) if required_ else body.get(name, default)
    if value is not None and not isinstance(value, str):
        raise _type_error(name, "a string", value)
    return value


def integer(body: Mapping[str, Any], name: str, *, minimum: int | None = None, default: Any = None) -> Any:
    """An optional integer field with an optional lower bound."""
    value = body.get(name, default)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise _type_error(name, "an integer", value)
    if minimum is not None and value < minimum:
        raise bad_request(f"Invalid '{name}': integer below minimum value {minimum}.", param=name)
    return value


def number(body: Mapping[str, Any], name: str) -> float | None:
    """An optional number field."""
    value = body.get(name)
    if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)):
        raise _type_error(name, "a number", value)
    return value


def boolean(body: Mapping[str, Any], name: str, default: bool | None = None) -> bool | None:
    """An optional boolean field."""
    value = body.get(name, default)
    if value is not None and not isinstance(value, bool):
        raise _type_error(name, "a boolean", value)
    return value


def obj(body: Mapping[str, Any], name: str) -> dict[str, Any] | None:
    """An optional object field."""
    value = body.get(name)
    if value is not None and not isinstance(value, dict):
        raise _type_error(name, "an object", value)
    return value


def array(body: Mapping[str, Any], name: str, *, required_: bool = False) -> list[Any] | None:
    """An optional (or required) array field."""
    value = required(body, name) if required_ else body.get(name)
    if value is not None and not isinstance(value, list):
        raise _type_error(name, "an array", value)
    return value


def metadata(body: Mapping[str, Any], name: str = "metadata") -> dict[str, str] | None:
    """Metadata: at most 16 pairs, string keys <= 64 chars and string values <= 512 chars."""
    value = obj(body, name)
    if value is None:
        return None
    if len(value) > MAX_METADATA_PAIRS:
        raise bad_request(
            f"Invalid '{name}': too many properties. Expected an object with at most {MAX_METADATA_PAIRS} "
            f"properties, but got an object with {len(value)} properties instead.",
            param=name,
            code="object_above_max_properties",
        )
    for key, item in value.items():
        if len(key) > MAX_METADATA_KEY:
            raise bad_request(
                f"Invalid '{name}': key '{key[:20]}...' is longer than {MAX_METADATA_KEY} characters.",
                param=f"{name}.{key}",
                code="string_above_max_length",
            )
        if not isinstance(item, str):
            raise _type_error(f"{name}.{key}", "a string", item)
        if len(item) > MAX_METADATA_VALUE:
            raise bad_request(
                f"Invalid '{name}.{key}': string too long. Expected a string with maximum length "
                f"{MAX_METADATA_VALUE}, but got a string with length {len(item)} instead.",
                param=f"{name}.{key}",
                code="string_above_max_length",
            )
    return dict(value)


def assistant_tools(body: Mapping[str, Any], name: str = "tools") -> list[dict[str, Any]] | None:
    """Assistants-API tools: code_interpreter, file_search or function (with a function name)."""
    tools = array(body, name)
    if tools is None:
        return None
    for index, tool in enumerate(tools):
        param = f"{name}[{index}]"
        if not isinstance(tool, dict):
            raise _type_error(param, "an object", tool)
        if tool.get("type") not in TOOL_TYPES:
            raise bad_request(
                f"Invalid value for '{param}.type': expected one of {sorted(TOOL_TYPES)}.",
                param=f"{param}.type",
                code="invalid_value",
            )
        if tool["type"] == "function":
            function = tool.get("function")
            if not isinstance(function, dict) or not isinstance(function.get("name"), str):
                raise bad_request(f"Missing required parameter: '{param}.function.name'.", param=param)
    return [dict(tool) for tool in tools]


def one_of(body: Mapping[str, Any], name: str, allowed: set[str], default: str | None = None) -> str | None:
    """An optional string field limited to `allowed`."""
    value = body.get(name, default)
    if value is not None and value not in allowed:
        raise bad_request(
            f"Invalid value: '{value}'. Supported values are: {', '.join(repr(a) for a in sorted(allowed))}.",
            param=name,
            code="invalid_value",
        )
    return value
