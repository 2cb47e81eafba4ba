"""Tool definitions a run may carry, and the ``Tool`` union that tells them apart.

Function tools come in two shapes (the Assistants one nests the definition under ``function``, the
Responses one is flat); file_search and code_interpreter are one model each whose backend-specific fields
are checked later by ``RunRequest``. Any other tool type is passed through as a dict for the Responses
backend.
"""

from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Discriminator, Field, Tag, WithJsonSchema

from schemas.common import _STRICT, FunctionName
from schemas.limits import FILE_SEARCH_MAX_NUM_RESULTS
from schemas.strings import Id, IdOrObject, JsonArray, JsonObject, Text


class FunctionDefinition(BaseModel):
    """The function inside an Assistants function tool."""

    model_config = _STRICT

    name: FunctionName
    description: Text | None = None
    parameters: JsonObject | None = Field(default=None, description="JSON Schema of the arguments.")
    strict: bool | None = None


class FunctionTool(BaseModel):
    """An Assistants function tool: ``{"type": "function", "function": {"name": ...}}``."""

    model_config = _STRICT

    type: Literal["function"]
    function: FunctionDefinition


class FlatFunctionTool(BaseModel):
    """A Responses function tool: ``{"type": "function", "name": ...}`` (the FunctionTool schema)."""

    model_config = _STRICT

    type: Literal["function"]
    name: FunctionName
    description: Text | None = None
    parameters: JsonObject | None = Field(default=None, description="JSON Schema of the arguments.")
    strict: bool | None = None
    output_schema: JsonObject | None = None
    defer_loading: bool | None = None
    allowed_callers: JsonArray | None = None


class FileSearchSettings(BaseModel):
    """Assistants file_search overrides."""

    model_config = _STRICT

    max_num_results: int | None = Field(default=None, ge=1, le=FILE_SEARCH_MAX_NUM_RESULTS)
    ranking_options: JsonObject | None = None


class FileSearchTool(BaseModel):
    """The file_search tool: ``file_search`` settings on Assistants, ``vector_store_ids`` on Responses."""

    model_config = _STRICT

    type: Literal["file_search"]
    file_search: FileSearchSettings | None = Field(default=None, description="Assistants backend only.")
    vector_store_ids: list[Id] | None = Field(
        default=None, description="Responses backend only, and required there."
    )
    max_num_results: int | None = Field(default=None, ge=1, le=FILE_SEARCH_MAX_NUM_RESULTS)
    ranking_options: JsonObject | None = None
    filters: JsonObject | None = None

    def responses_fields(self) -> list[str]:
        """The Responses-only fields this tool sets."""
        names = ("vector_store_ids", "max_num_results", "ranking_options", "filters")
        return [name for name in names if getattr(self, name) is not None]


class CodeInterpreterTool(BaseModel):
    """The code_interpreter tool; Responses also needs a ``container`` (an id or ``{"type": "auto"}``)."""

    model_config = _STRICT

    type: Literal["code_interpreter"]
    container: IdOrObject | None = None


_TOOL_TAGS: dict[type[BaseModel], str] = {
    FunctionTool: "FunctionTool",
    FlatFunctionTool: "FlatFunctionTool",
    FileSearchTool: "FileSearchTool",
    CodeInterpreterTool: "CodeInterpreterTool",
}


def _tool_tag(value: Any) -> str | None:
    """Which tool model a raw tool (or an already-built one, when serialising) belongs to."""
    if isinstance(value, BaseModel):
        return _TOOL_TAGS.get(type(value))
    if not isinstance(value, Mapping):
        return None
    kind = value.get("type")
    if not isinstance(kind, str) or not kind:
        return None
    if kind == "function":
        # Both APIs call it "function"; only the Assistants shape nests the definition.
        return "FunctionTool" if "function" in value else "FlatFunctionTool"
    if kind == "file_search":
        return "FileSearchTool"
    if kind == "code_interpreter":
        return "CodeInterpreterTool"
    return "OtherTool"


# Without this the pass-through dict's schema ({"type": "object"}) would also match the known tools, and
# a JSON Schema validator would refuse every tool under oneOf.
_OTHER_TOOL_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["type"],
    "properties": {
        "type": {
            "type": "string",
            "minLength": 1,
            "not": {"enum": ["function", "file_search", "code_interpreter"]},
        }
    },
    "additionalProperties": True,
}

Tool = Annotated[
    Annotated[FunctionTool, Tag("FunctionTool")]
    | Annotated[FlatFunctionTool, Tag("FlatFunctionTool")]
    | Annotated[FileSearchTool, Tag("FileSearchTool")]
    | Annotated[CodeInterpreterTool, Tag("CodeInterpreterTool")]
    | Annotated[JsonObject, Tag("OtherTool"), WithJsonSchema(_OTHER_TOOL_SCHEMA)],
    Discriminator(
        _tool_tag,
        custom_error_type="tool_type",
        custom_error_message="tool: needs a non-empty string 'type'",
    ),
]
"""A tool definition. function, file_search and code_interpreter are checked; any other type (web_search,
mcp, ...) is passed through as a dict for the Responses backend."""
