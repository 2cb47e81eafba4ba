"""What a producer may ask of the system: the job request models.

Requests travel as JSON through Redis and Celery, so every model round-trips through
``model_dump(mode="json")`` and ``model_validate``. Bad input raises ``pydantic.ValidationError`` whose
errors carry the bad field in ``loc`` and the limit in the message; checks that need the file system
(paths) or the worker's configuration (the default backend) are left to the worker, which can reuse
``path_problem`` and ``RunRequest.with_backend``.
"""

import os
from collections.abc import Iterable, Mapping, Sequence
from enum import StrEnum
from typing import Annotated, Any, Literal, Self

from annotated_types import MaxLen
from pydantic import (
    AllowInfNan,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    StringConstraints,
    Tag,
    TypeAdapter,
    ValidationError,
    WithJsonSchema,
    field_validator,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

from schemas.limits import (
    ATTRIBUTES_KEY_MAX,
    ATTRIBUTES_MAX_PAIRS,
    ATTRIBUTES_VALUE_MAX,
    CHUNK_SIZE_MAX,
    CHUNK_SIZE_MIN,
    CLEANUP_DEADLINE_MAX_S,
    EXPIRES_AFTER_DAYS_MAX,
    FILE_SEARCH_EXTENSIONS,
    FILE_SEARCH_MAX_NUM_RESULTS,
    FILE_SIZE_MAX,
    FUNCTION_NAME_PATTERN,
    IDEMPOTENCY_KEY_MAX,
    INDEX_DEADLINE_MAX_S,
    INDEX_INPUTS_MAX,
    INSTRUCTIONS_MAX,
    MESSAGE_CONTENT_MAX,
    METADATA_KEY_MAX,
    METADATA_MAX_PAIRS,
    METADATA_VALUE_MAX,
    MIN_COMPLETION_TOKENS,
    MIN_OUTPUT_TOKENS,
    MIN_PROMPT_TOKENS,
    RESERVED_METADATA_KEY,
    RESPONSES_CREATE_PARAMS,
    RETRY_FAILED_MAX,
    RUN_DEADLINE_MAX_S,
    RUN_METADATA_MAX_PAIRS,
    RUN_TOOLS_MAX,
    TEMPERATURE_MAX,
    TOOL_OUTPUT_MAX,
    TOOL_OUTPUTS_MAX,
    TOOLS_MAX,
    TOP_P_MAX,
    VECTOR_STORE_DESCRIPTION_MAX,
    VECTOR_STORE_NAME_MAX,
)

# Every model forbids unknown fields, so a typo is an error naming the field rather than a silent no-op.
_STRICT = ConfigDict(extra="forbid")

Loc = tuple[str | int, ...]


class _Problems:
    """Errors found by a model validator, raised together, each at the loc of the field it concerns.

    A plain ValueError from a model validator would land at the model's root; a ValidationError raised
    inside a validator is merged by pydantic with its locs kept (and prefixed when the model is nested).
    """

    def __init__(self) -> None:
        self._errors: list[InitErrorDetails] = []

    def add(self, loc: Loc, error_type: str, message: str, value: Any) -> None:
        # The message is already formatted and no context is passed, so braces in ids are left alone.
        error = PydanticCustomError(error_type, message)
        self._errors.append(InitErrorDetails(type=error, loc=loc, input=value))

    def raise_if_any(self, title: str) -> None:
        if self._errors:
            raise ValidationError.from_exception_data(title, self._errors)


def _duplicates(values: Sequence[str]) -> list[tuple[int, str, int]]:
    """(index, value, index of its first occurrence) for every repeated value."""
    first_seen: dict[str, int] = {}
    repeats: list[tuple[int, str, int]] = []
    for index, value in enumerate(values):
        if value in first_seen:
            repeats.append((index, value, first_seen[value]))
        else:
            first_seen[value] = index
    return repeats


def _report_duplicates(problems: _Problems, field: str, values: Sequence[str], what: str = "") -> None:
    label = f"{field}: duplicate {what}".rstrip()
    for index, value, first in _duplicates(values):
        problems.add((field, index), "duplicate", f"{label} {value!r} (also at index {first})", value)


# --- Reusable types ---------------------------------------------------------------------------------

NonEmptyStr = Annotated[str, StringConstraints(min_length=1)]
"""A string with at least one character (ids, names)."""

IdempotencyKey = Annotated[str, StringConstraints(min_length=1, max_length=IDEMPOTENCY_KEY_MAX)]
"""A producer-chosen key: a second job with the same key returns the first job instead of a new one."""

FunctionName = Annotated[str, StringConstraints(pattern=FUNCTION_NAME_PATTERN)]
"""A function tool's name as OpenAI allows it: a-z, A-Z, 0-9, _ and -, 1 to 64 characters."""


def _check_pair_count(field: str, limit: int) -> BeforeValidator:
    """A validator that refuses a mapping with more than `limit` pairs, naming `field` and the limit."""

    def check(value: Any) -> Any:
        # Counted before the pairs are validated, so a huge map fails fast with the useful message.
        if isinstance(value, Mapping) and len(value) > limit:
            raise PydanticCustomError(
                "too_many_pairs",
                "{field}: at most {limit} pairs, got {count}",
                {"field": field, "limit": limit, "count": len(value)},
            )
        return value

    return BeforeValidator(check)


Metadata = Annotated[
    dict[
        Annotated[str, StringConstraints(max_length=METADATA_KEY_MAX)],
        Annotated[str, StringConstraints(max_length=METADATA_VALUE_MAX)],
    ],
    MaxLen(METADATA_MAX_PAIRS),
    _check_pair_count("metadata", METADATA_MAX_PAIRS),
]
"""OpenAI metadata: at most 16 pairs, keys of at most 64 characters, string values of at most 512."""

AttributeValue = (
    Annotated[str, StringConstraints(max_length=ATTRIBUTES_VALUE_MAX)]
    | bool
    | int
    | Annotated[float, AllowInfNan(False)]
)
"""A vector store file attribute value: a string of at most 512 characters, a number or a boolean."""

Attributes = Annotated[
    dict[Annotated[str, StringConstraints(max_length=ATTRIBUTES_KEY_MAX)], AttributeValue],
    MaxLen(ATTRIBUTES_MAX_PAIRS),
    _check_pair_count("attributes", ATTRIBUTES_MAX_PAIRS),
]
"""Vector store file attributes: at most 16 pairs, keys of at most 64 characters."""


# --- Tools ------------------------------------------------------------------------------------------


class FunctionDefinition(BaseModel):
    """The function inside an Assistants function tool."""

    model_config = _STRICT

    name: FunctionName
    description: str | None = None
    parameters: dict[str, Any] | None = Field(default=None, description="JSON Schema of the arguments.")
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
    description: str | None = None
    parameters: dict[str, Any] | None = Field(default=None, description="JSON Schema of the arguments.")
    strict: bool | None = None
    output_schema: dict[str, Any] | None = None
    defer_loading: bool | None = None
    allowed_callers: list[Any] | None = None


class FileSearchSettings(BaseModel):
    """Assistants file_search overrides."""

    model_config = _STRICT

    max_num_results: int | None = Field(default=None, ge=1, le=FILE_SEARCH_MAX_NUM_RESULTS)
    ranking_options: dict[str, Any] | None = None


class FileSearchTool(BaseModel):
    """The file_search tool: ``file_search`` settings on Assistants, ``vector_store_ids`` on Responses."""

    model_config = _STRICT

    type: Literal["file_search"]
    file_search: FileSearchSettings | None = Field(default=None, description="Assistants backend only.")
    vector_store_ids: list[NonEmptyStr] | None = Field(
        default=None, description="Responses backend only, and required there."
    )
    max_num_results: int | None = Field(default=None, ge=1, le=FILE_SEARCH_MAX_NUM_RESULTS)
    ranking_options: dict[str, Any] | None = None
    filters: dict[str, Any] | None = None

    def responses_fields(self) -> list[str]:
        """The Responses-only fields this tool sets."""
        names = ("vector_store_ids", "max_num_results", "ranking_options", "filters")
        return [name for name in names if getattr(self, name) is not None]


class CodeInterpreterTool(BaseModel):
    """The code_interpreter tool; Responses also needs a ``container`` (an id or ``{"type": "auto"}``)."""

    model_config = _STRICT

    type: Literal["code_interpreter"]
    container: str | dict[str, Any] | None = None


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
    | Annotated[dict[str, Any], Tag("OtherTool"), WithJsonSchema(_OTHER_TOOL_SCHEMA)],
    Discriminator(
        _tool_tag,
        custom_error_type="tool_type",
        custom_error_message="tool: needs a non-empty string 'type'",
    ),
]
"""A tool definition. function, file_search and code_interpreter are checked; any other type (web_search,
mcp, ...) is passed through as a dict for the Responses backend."""


# --- Run requests -----------------------------------------------------------------------------------


class RunStrategy(StrEnum):
    """What to do when the thread or conversation already has an active run."""

    ENQUEUE = "enqueue"
    """Wait: jobs on one thread or conversation run one at a time, in submission order."""
    REJECT = "reject"
    """Fail at once with the error code ``thread_busy``."""
    INTERRUPT = "interrupt"
    """Cancel the active run, then start this one."""


class RunBackend(StrEnum):
    """Which OpenAI API carries out a run."""

    ASSISTANTS = "assistants"
    """Assistants API: a run of an assistant on a thread."""
    RESPONSES = "responses"
    """Responses API: a background response, optionally in a conversation."""


class AttachmentTool(BaseModel):
    """A tool an attached file is added to."""

    model_config = _STRICT

    type: Literal["code_interpreter", "file_search"]


class Attachment(BaseModel):
    """A file attached to a message (Assistants backend)."""

    model_config = _STRICT

    file_id: NonEmptyStr
    tools: list[AttachmentTool]


class InputMessage(BaseModel):
    """A message added before the run (Assistants) or given as input (Responses)."""

    model_config = _STRICT

    role: Literal["user", "assistant"]
    content: Annotated[str, StringConstraints(min_length=1, max_length=MESSAGE_CONTENT_MAX)]
    attachments: list[Attachment] | None = Field(default=None, description="Assistants backend only.")
    metadata: Metadata | None = None


class ResponseFormat(BaseModel):
    """An Assistants response format other than ``"auto"``."""

    model_config = _STRICT

    type: Literal["text", "json_object", "json_schema"]
    json_schema: dict[str, Any] | None = Field(
        default=None, description="Required with type json_schema: {name, schema?, strict?, description?}."
    )

    @model_validator(mode="after")
    def _json_schema_matches_type(self) -> Self:
        problems = _Problems()
        if self.type == "json_schema":
            if self.json_schema is None:
                problems.add(("json_schema",), "missing", "json_schema: required with type json_schema", None)
            elif not isinstance(self.json_schema.get("name"), str):
                problems.add(("json_schema", "name"), "missing", "json_schema: needs a string name", None)
        elif self.json_schema is not None:
            message = f"json_schema: only with type json_schema, not {self.type}"
            problems.add(("json_schema",), "unexpected", message, self.json_schema)
        problems.raise_if_any(type(self).__name__)
        return self


def _response_format_tag(value: Any) -> str:
    return "auto" if isinstance(value, str) else "ResponseFormat"


ResponseFormatOption = Annotated[
    Annotated[Literal["auto"], Tag("auto")] | Annotated[ResponseFormat, Tag("ResponseFormat")],
    Discriminator(_response_format_tag),
]
"""``"auto"`` or ``{"type": "text" | "json_object" | "json_schema", "json_schema": ...}``."""


class TruncationStrategy(BaseModel):
    """How an Assistants thread is truncated before the run."""

    model_config = _STRICT

    type: Literal["auto", "last_messages"]
    last_messages: int | None = Field(default=None, ge=1)

    @model_validator(mode="after")
    def _count_given_for_last_messages(self) -> Self:
        if self.type == "last_messages" and self.last_messages is None:
            raise PydanticCustomError("missing", "last_messages: required with type last_messages")
        return self


class PromptRef(BaseModel):
    """A stored prompt for the Responses backend."""

    model_config = _STRICT

    id: NonEmptyStr
    variables: dict[str, str | dict[str, Any]] | None = None
    version: str | None = None


# Fields only one backend understands; each maps to the backend that does.
ASSISTANTS_ONLY_FIELDS = (
    "assistant_id",
    "thread_id",
    "additional_instructions",
    "max_prompt_tokens",
    "max_completion_tokens",
    "truncation_strategy",
    "response_format",
)
RESPONSES_ONLY_FIELDS = (
    "conversation_id",
    "previous_response_id",
    "prompt",
    "max_output_tokens",
    "store",
    "text",
    "reasoning",
    "truncation",
    "include",
    "service_tier",
    "response_options",
)

# Responses create parameters that RunRequest has a field for, and that field's name.
_RESPONSES_OWN_FIELDS = {
    name: name
    for name in (
        "model",
        "instructions",
        "tools",
        "temperature",
        "top_p",
        "tool_choice",
        "parallel_tool_calls",
        "metadata",
        "prompt",
        "max_output_tokens",
        "previous_response_id",
        "store",
        "text",
        "reasoning",
        "truncation",
        "include",
        "service_tier",
    )
} | {"conversation": "conversation_id", "input": "messages"}
# Responses create parameters the worker sets itself, and why.
_RESPONSES_SYSTEM_PARAMS = {
    "background": "every response runs in background mode",
    "stream": "the worker polls, it does not stream",
    "stream_options": "the worker polls, it does not stream",
}
# What response_options may carry: the rest of CreateResponse.
RESPONSE_OPTIONS_ALLOWED = frozenset(
    RESPONSES_CREATE_PARAMS - set(_RESPONSES_OWN_FIELDS) - set(_RESPONSES_SYSTEM_PARAMS)
)


def _is_set(value: Any) -> bool:
    # Empty lists and maps ask for nothing, so they do not make a field "used" on the wrong backend.
    return value is not None and value != [] and value != {}


class RunRequest(BaseModel):
    """Start a run: an assistant on a thread, or a background response, and see it through.

    Backend-specific rules are checked once the backend is known: at once when ``backend`` is given,
    otherwise by ``with_backend`` in the worker, which knows its default.
    """

    model_config = _STRICT

    kind: Literal["run"] = "run"
    backend: RunBackend | None = Field(default=None, description="None: the worker's configured default.")
    assistant_id: str | None = Field(default=None, description="Required on the assistants backend.")
    thread_id: NonEmptyStr | None = Field(
        default=None, description="Assistants: an existing thread; None creates one."
    )
    conversation_id: NonEmptyStr | None = Field(
        default=None,
        description="Responses: an existing conversation; None creates one (unless previous_response_id).",
    )
    messages: list[InputMessage] = Field(
        default_factory=list,
        description="Added before the run (a new thread's initial messages); the input on Responses.",
    )
    # Overrides the Assistants run create API accepts; most also apply to Responses.
    instructions: Annotated[str, StringConstraints(max_length=INSTRUCTIONS_MAX)] | None = None
    additional_instructions: Annotated[str, StringConstraints(max_length=INSTRUCTIONS_MAX)] | None = None
    model: NonEmptyStr | None = None
    tools: Annotated[list[Tool], MaxLen(TOOLS_MAX)] | None = None
    temperature: float | None = Field(default=None, ge=0, le=TEMPERATURE_MAX)
    top_p: float | None = Field(default=None, ge=0, le=TOP_P_MAX)
    max_prompt_tokens: int | None = Field(default=None, ge=MIN_PROMPT_TOKENS)
    max_completion_tokens: int | None = Field(default=None, ge=MIN_COMPLETION_TOKENS)
    response_format: ResponseFormatOption | None = None
    truncation_strategy: TruncationStrategy | None = None
    parallel_tool_calls: bool | None = None
    tool_choice: Literal["none", "auto", "required"] | dict[str, Any] | None = None
    reasoning_effort: Literal["none", "minimal", "low", "medium", "high", "xhigh", "max"] | None = Field(
        default=None, description="On Responses this becomes reasoning.effort."
    )
    metadata: Metadata | None = Field(
        default=None,
        description=f"At most {RUN_METADATA_MAX_PAIRS} pairs: the system adds {RESERVED_METADATA_KEY}.",
    )
    # Responses-only.
    prompt: PromptRef | None = None
    max_output_tokens: int | None = Field(default=None, ge=MIN_OUTPUT_TOKENS)
    previous_response_id: NonEmptyStr | None = None
    store: bool | None = Field(
        default=None, description="Must not be false: background responses are stored."
    )
    text: dict[str, Any] | None = None
    reasoning: dict[str, Any] | None = None
    truncation: Literal["auto", "disabled"] | None = None
    include: list[NonEmptyStr] | None = None
    service_tier: Literal["auto", "default", "flex", "scale", "priority", "fast", "ultrafast"] | None = None
    response_options: dict[str, Any] | None = Field(
        default=None,
        description="Other Responses create parameters: " + ", ".join(sorted(RESPONSE_OPTIONS_ALLOWED)) + ".",
    )
    # Job control.
    strategy: RunStrategy = RunStrategy.ENQUEUE
    deadline_s: float | None = Field(
        default=None, gt=0, le=RUN_DEADLINE_MAX_S, description="None: the worker's default."
    )
    idempotency_key: IdempotencyKey | None = None
    run_tools: bool = Field(
        default=True, description="Let functions registered in the worker answer the tool calls they know."
    )

    @field_validator("assistant_id")
    @classmethod
    def _assistant_id_not_empty(cls, value: str | None) -> str | None:
        if value is not None and not value.strip():
            raise PydanticCustomError("empty", "assistant_id: must not be empty")
        return value

    @field_validator("metadata")
    @classmethod
    def _metadata_leaves_room_for_job_key(cls, value: dict[str, str] | None) -> dict[str, str] | None:
        if value is None:
            return value
        if RESERVED_METADATA_KEY in value:
            raise PydanticCustomError(
                "reserved_key",
                "metadata: the key {key} is reserved (the system puts the job id there)",
                {"key": RESERVED_METADATA_KEY},
            )
        if len(value) > RUN_METADATA_MAX_PAIRS:
            raise PydanticCustomError(
                "too_many_pairs",
                "metadata: at most {limit} pairs on a run ({key} takes the 16th), got {count}",
                {"limit": RUN_METADATA_MAX_PAIRS, "key": RESERVED_METADATA_KEY, "count": len(value)},
            )
        return value

    @model_validator(mode="after")
    def _fields_fit_together(self) -> Self:
        problems = _Problems()
        _check_any_backend(self, problems)
        if self.backend is RunBackend.ASSISTANTS:
            _check_assistants(self, problems)
        elif self.backend is RunBackend.RESPONSES:
            _check_responses(self, problems)
        problems.raise_if_any(type(self).__name__)
        return self

    def with_backend(self, default: RunBackend) -> "RunRequest":
        """A copy with the backend filled in (``default`` unless one was given) and re-validated.

        Raises ``pydantic.ValidationError`` when the request does not suit that backend.
        """
        data = self.model_dump(exclude_unset=True)
        data["backend"] = self.backend or default
        return RunRequest.model_validate(data)

    def used_fields(self, names: Iterable[str]) -> list[str]:
        """Those of `names` this request sets (non-empty)."""
        return [name for name in names if _is_set(getattr(self, name))]


def _check_any_backend(request: RunRequest, problems: _Problems) -> None:
    """Rules no backend could satisfy when broken."""
    if request.thread_id is not None and request.conversation_id is not None:
        message = "conversation_id: give thread_id (assistants) or conversation_id (responses), not both"
        problems.add(("conversation_id",), "conflict", message, request.conversation_id)
    if request.conversation_id is not None and request.previous_response_id is not None:
        message = (
            "previous_response_id: not with conversation_id (the conversation already holds the history)"
        )
        problems.add(("previous_response_id",), "conflict", message, request.previous_response_id)
    if request.reasoning_effort is not None and request.reasoning and "effort" in request.reasoning:
        message = "reasoning_effort: give it here or as reasoning.effort, not both"
        problems.add(("reasoning_effort",), "conflict", message, request.reasoning_effort)
    if request.store is False:
        message = "store: must not be false (responses run in background mode, which needs them stored)"
        problems.add(("store",), "unsupported", message, request.store)
    if request.backend is None:
        assistants_used = request.used_fields(ASSISTANTS_ONLY_FIELDS)
        responses_used = request.used_fields(RESPONSES_ONLY_FIELDS)
        if assistants_used and responses_used:
            field = responses_used[0]
            message = (
                f"{field}: a responses-only field, but {assistants_used[0]} is assistants-only; "
                "no backend takes both"
            )
            problems.add((field,), "backend_conflict", message, getattr(request, field))
    _check_response_options(request.response_options, problems)


def _check_response_options(options: dict[str, Any] | None, problems: _Problems) -> None:
    for key, value in (options or {}).items():
        loc: Loc = ("response_options", key)
        if key in _RESPONSES_OWN_FIELDS:
            message = f"response_options: {key} has its own field, set {_RESPONSES_OWN_FIELDS[key]} instead"
            problems.add(loc, "own_field", message, value)
        elif key in _RESPONSES_SYSTEM_PARAMS:
            message = f"response_options: {key} is set by the system ({_RESPONSES_SYSTEM_PARAMS[key]})"
            problems.add(loc, "system_param", message, value)
        elif key not in RESPONSE_OPTIONS_ALLOWED:
            allowed = ", ".join(sorted(RESPONSE_OPTIONS_ALLOWED))
            message = f"response_options: {key} is not a Responses create parameter (allowed: {allowed})"
            problems.add(loc, "unknown_param", message, value)


def _wrong_backend(request: RunRequest, problems: _Problems, fields: Sequence[str], backend: str) -> None:
    other = "responses" if backend == "assistants" else "assistants"
    for field in request.used_fields(fields):
        message = f"{field}: only on the {other} backend, not {backend}"
        problems.add((field,), "wrong_backend", message, getattr(request, field))


def _check_assistants(request: RunRequest, problems: _Problems) -> None:
    """Rules of the Assistants backend."""
    if request.assistant_id is None:
        problems.add(("assistant_id",), "missing", "assistant_id: required on the assistants backend", None)
    _wrong_backend(request, problems, RESPONSES_ONLY_FIELDS, "assistants")
    tools = request.tools or []
    if len(tools) > RUN_TOOLS_MAX:
        message = (
            f"tools: at most {RUN_TOOLS_MAX} on the assistants backend (a run's override), got {len(tools)}"
        )
        problems.add(("tools",), "too_long", message, len(tools))
    for index, tool in enumerate(tools):
        problem = _assistants_tool_problem(tool)
        if problem:
            problems.add(("tools", index), "wrong_backend", f"tools[{index}]: {problem}", _tool_type(tool))


def _assistants_tool_problem(tool: Any) -> str | None:
    if isinstance(tool, FlatFunctionTool):
        return 'the assistants backend needs {"type": "function", "function": {"name": ...}}'
    if isinstance(tool, FileSearchTool) and tool.responses_fields():
        return f"file_search {', '.join(tool.responses_fields())} only on the responses backend"
    if isinstance(tool, CodeInterpreterTool) and tool.container is not None:
        return "code_interpreter container only on the responses backend"
    if isinstance(tool, dict):
        return f"type {tool.get('type')} is not an Assistants tool (function, file_search, code_interpreter)"
    return None


def _check_responses(request: RunRequest, problems: _Problems) -> None:
    """Rules of the Responses backend."""
    if request.model is None and request.prompt is None:
        problems.add(
            ("model",), "missing", "model: required on the responses backend unless prompt is given", None
        )
    _wrong_backend(request, problems, ASSISTANTS_ONLY_FIELDS, "responses")
    for index, message in enumerate(request.messages):
        if _is_set(message.attachments):
            text = "attachments: only on the assistants backend, not responses"
            problems.add(("messages", index, "attachments"), "wrong_backend", text, None)
    for index, tool in enumerate(request.tools or []):
        problem = _responses_tool_problem(tool)
        if problem:
            problems.add(("tools", index), "wrong_backend", f"tools[{index}]: {problem}", _tool_type(tool))


def _responses_tool_problem(tool: Any) -> str | None:
    if isinstance(tool, FunctionTool):
        return 'the responses backend needs {"type": "function", "name": ...} (not nested in "function")'
    if isinstance(tool, FileSearchTool):
        if tool.file_search is not None:
            return (
                "file_search settings only on the assistants backend (set max_num_results etc. on the tool)"
            )
        if not tool.vector_store_ids:
            return "file_search needs vector_store_ids on the responses backend"
    if isinstance(tool, CodeInterpreterTool) and tool.container is None:
        return 'code_interpreter needs a container on the responses backend (e.g. {"type": "auto"})'
    return None


def _tool_type(tool: Any) -> Any:
    return tool.get("type") if isinstance(tool, dict) else getattr(tool, "type", None)


# --- Tool outputs -----------------------------------------------------------------------------------


class ToolOutput(BaseModel):
    """The answer to one tool call of a run waiting for tool outputs."""

    model_config = _STRICT

    tool_call_id: NonEmptyStr
    output: Annotated[str, StringConstraints(max_length=TOOL_OUTPUT_MAX)]


class ToolOutputsRequest(BaseModel):
    """Answers for the tool calls a run job is waiting on."""

    model_config = _STRICT

    job_id: NonEmptyStr
    tool_outputs: list[ToolOutput] = Field(min_length=1, max_length=TOOL_OUTPUTS_MAX)

    @model_validator(mode="after")
    def _one_output_per_call(self) -> Self:
        problems = _Problems()
        ids = [output.tool_call_id for output in self.tool_outputs]
        for index, value, first in _duplicates(ids):
            message = f"tool_outputs: duplicate tool_call_id {value!r} (also at index {first})"
            problems.add(("tool_outputs", index, "tool_call_id"), "duplicate", message, value)
        problems.raise_if_any(type(self).__name__)
        return self


# --- Vector store indexing --------------------------------------------------------------------------


class AutoChunking(BaseModel):
    """OpenAI's default chunking (currently 800-token chunks overlapping by 400)."""

    model_config = _STRICT

    type: Literal["auto"]


class StaticChunkingConfig(BaseModel):
    """Chunk size and overlap, in tokens."""

    model_config = _STRICT

    max_chunk_size_tokens: int = Field(ge=CHUNK_SIZE_MIN, le=CHUNK_SIZE_MAX)
    chunk_overlap_tokens: int = Field(ge=0, description="At most half of max_chunk_size_tokens.")

    @model_validator(mode="after")
    def _overlap_at_most_half(self) -> Self:
        limit = self.max_chunk_size_tokens // 2
        if self.chunk_overlap_tokens > limit:
            problems = _Problems()
            message = (
                f"chunk_overlap_tokens: at most half of max_chunk_size_tokens ({limit}), "
                f"got {self.chunk_overlap_tokens}"
            )
            problems.add(("chunk_overlap_tokens",), "overlap_too_large", message, self.chunk_overlap_tokens)
            problems.raise_if_any(type(self).__name__)
        return self


class StaticChunking(BaseModel):
    """Chunking with a chosen chunk size and overlap."""

    model_config = _STRICT

    type: Literal["static"]
    static: StaticChunkingConfig


ChunkingStrategy = Annotated[AutoChunking | StaticChunking, Field(discriminator="type")]
"""``{"type": "auto"}`` or ``{"type": "static", "static": {...}}``."""


class ExpiresAfter(BaseModel):
    """When an idle vector store expires."""

    model_config = _STRICT

    anchor: Literal["last_active_at"] = "last_active_at"
    days: int = Field(ge=1, le=EXPIRES_AFTER_DAYS_MAX)


class NewVectorStore(BaseModel):
    """A vector store to create for an indexing job."""

    model_config = _STRICT

    name: Annotated[str, StringConstraints(max_length=VECTOR_STORE_NAME_MAX)] | None = None
    description: Annotated[str, StringConstraints(max_length=VECTOR_STORE_DESCRIPTION_MAX)] | None = None
    metadata: Metadata | None = None
    expires_after: ExpiresAfter | None = None
    chunking_strategy: ChunkingStrategy | None = None


class VectorStoreBatchRequest(BaseModel):
    """Index files into a vector store: uploaded file ids and/or local paths the worker uploads.

    Paths are not checked here (that needs the file system); the worker checks them all with
    ``path_problem`` and reports every bad one in a single error, or skips them with ``skip_bad_paths``.
    """

    model_config = _STRICT

    kind: Literal["index"] = "index"
    vector_store_id: NonEmptyStr | None = Field(
        default=None, description="Exactly one of this and new_store."
    )
    new_store: NewVectorStore | None = None
    file_ids: list[NonEmptyStr] = Field(default_factory=list, max_length=INDEX_INPUTS_MAX)
    paths: list[NonEmptyStr] = Field(default_factory=list, max_length=INDEX_INPUTS_MAX)
    attributes: Attributes | None = None
    chunking_strategy: ChunkingStrategy | None = None
    deadline_s: float | None = Field(
        default=None, gt=0, le=INDEX_DEADLINE_MAX_S, description="None: the worker's default."
    )
    retry_failed: int = Field(
        default=1, ge=0, le=RETRY_FAILED_MAX, description="Extra rounds for failed files."
    )
    skip_bad_paths: bool = Field(
        default=False, description="Skip bad paths and name them in the result instead of refusing the job."
    )
    idempotency_key: IdempotencyKey | None = None

    @model_validator(mode="after")
    def _inputs_and_target_make_sense(self) -> Self:
        problems = _Problems()
        if (self.vector_store_id is None) == (self.new_store is None):
            got = "neither" if self.vector_store_id is None else "both"
            message = f"vector_store_id: give exactly one of vector_store_id and new_store, got {got}"
            problems.add(("vector_store_id",), "store_target", message, self.vector_store_id)
        total = len(self.file_ids) + len(self.paths)
        if total == 0:
            message = "file_ids: give at least one file id or path (file_ids and paths are both empty)"
            problems.add(("file_ids",), "no_inputs", message, [])
        elif total > INDEX_INPUTS_MAX:
            message = f"paths: at most {INDEX_INPUTS_MAX} file ids and paths together, got {total}"
            problems.add(("paths",), "too_many_inputs", message, total)
        _report_duplicates(problems, "file_ids", self.file_ids)
        _report_duplicates(problems, "paths", self.paths)
        if self.chunking_strategy is not None and self.new_store and self.new_store.chunking_strategy:
            message = "chunking_strategy: give it on the request or on new_store, not both"
            problems.add(("chunking_strategy",), "conflict", message, None)
        problems.raise_if_any(type(self).__name__)
        return self


def path_problem(path: str, size: int | None, readable: bool, exists: bool) -> str | None:
    """Why `path` cannot be indexed, as a short human message, or None when it can.

    Pure: the caller looks at the file system and passes what it found (`size` None when unknown).
    """
    if not exists:
        return "missing"
    if not readable:
        return "not readable"
    extension = os.path.splitext(path)[1].lower()
    if extension not in FILE_SEARCH_EXTENSIONS:
        accepted = " ".join(sorted(FILE_SEARCH_EXTENSIONS))
        found = f"unsupported extension {extension}" if extension else "no file extension"
        return f"{found} (file_search accepts: {accepted})"
    if size is not None and size > FILE_SIZE_MAX:
        return f"larger than {FILE_SIZE_MAX // (1024 * 1024)} MiB"
    if size == 0:
        # The Files API refuses empty uploads, so say so before uploading.
        return "empty"
    return None


# --- Clean-up ---------------------------------------------------------------------------------------


class CleanupTarget(StrEnum):
    """A kind of object a clean-up job may delete."""

    THREADS = "threads"
    """Assistants threads idle for longer than the idle limit."""
    CONVERSATIONS = "conversations"
    """Responses conversations idle for longer than the idle limit."""
    VECTOR_STORES = "vector_stores"
    """Vector stores idle for longer than the store idle limit."""
    FILES = "files"
    """Uploaded files no vector store or job refers to any more."""
    JOBS = "jobs"
    """Finished job records past their retention."""


class CleanupRequest(BaseModel):
    """Delete idle or orphaned OpenAI objects and old job records."""

    model_config = _STRICT

    kind: Literal["cleanup"] = "cleanup"
    targets: list[CleanupTarget] = Field(
        default_factory=lambda: list(CleanupTarget), min_length=1, description="Default: all of them."
    )
    dry_run: bool = Field(default=False, description="Report what would be deleted, delete nothing.")
    idle_s: float | None = Field(
        default=None, gt=0, description="Override the idle limit of threads/conversations."
    )
    store_idle_s: float | None = Field(
        default=None, gt=0, description="Override the idle limit of vector stores."
    )
    include_unmanaged: bool = Field(
        default=False, description="Also touch objects this system did not create."
    )
    idempotency_key: IdempotencyKey | None = None
    deadline_s: float | None = Field(
        default=None, gt=0, le=CLEANUP_DEADLINE_MAX_S, description="None: the worker's default."
    )

    @model_validator(mode="after")
    def _targets_unique(self) -> Self:
        problems = _Problems()
        _report_duplicates(problems, "targets", [target.value for target in self.targets], "target")
        problems.raise_if_any(type(self).__name__)
        return self


# --- Entry points -----------------------------------------------------------------------------------

JobRequest = Annotated[RunRequest | VectorStoreBatchRequest | CleanupRequest, Field(discriminator="kind")]
"""Any job request, told apart by ``kind``: "run", "index" or "cleanup"."""

# The title names the union in error reports, instead of pydantic's generated "tagged-union[...]".
_JOB_REQUEST: TypeAdapter[RunRequest | VectorStoreBatchRequest | CleanupRequest] = TypeAdapter(
    JobRequest, config=ConfigDict(title="JobRequest")
)


def parse_request(data: Mapping[str, Any]) -> RunRequest | VectorStoreBatchRequest | CleanupRequest:
    """Validate a job request of any kind (``data["kind"]`` picks the model).

    Raises ``pydantic.ValidationError``; its locs start with the kind, e.g. ``("run", "metadata")``.
    """
    return _JOB_REQUEST.validate_python(dict(data))


def json_schemas() -> dict[str, dict[str, Any]]:
    """The JSON Schema of each request model, keyed by model name, for producers in other languages."""
    models: tuple[type[BaseModel], ...] = (
        RunRequest,
        VectorStoreBatchRequest,
        CleanupRequest,
        ToolOutputsRequest,
    )
    return {model.__name__: model.model_json_schema() for model in models}
