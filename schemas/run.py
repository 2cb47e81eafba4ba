"""Run requests: start an assistant run or a background response, and answer the tool calls it makes.

``RunRequest`` carries the fields both backends take plus those only one understands; the backend rules
(which fields and tool shapes each backend accepts) are checked once the backend is known, at once when
``backend`` is given, otherwise by ``RunRequest.with_backend`` in the worker. ``ToolOutputsRequest``
answers the tool calls a run job is waiting on.
"""

from collections.abc import Callable, Iterable, Sequence
from enum import StrEnum
from typing import Annotated, Any, Literal, Self

from annotated_types import MaxLen
from pydantic import (
    BaseModel,
    Discriminator,
    Field,
    StringConstraints,
    Tag,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from schemas.backends import RunBackend
from schemas.common import (
    _STRICT,
    IdempotencyKey,
    Loc,
    Metadata,
    NonEmptyStr,
    _check_item_count,
    _check_request_size,
    _duplicates,
    _Problems,
)
from schemas.context import is_stored
from schemas.limits import (
    INSTRUCTIONS_MAX,
    MESSAGE_CONTENT_MAX,
    MESSAGES_MAX,
    MIN_COMPLETION_TOKENS,
    MIN_OUTPUT_TOKENS,
    MIN_PROMPT_TOKENS,
    REQUEST_BYTES_MAX,
    RESERVED_METADATA_KEY,
    RESPONSES_CREATE_PARAMS,
    RUN_DEADLINE_MAX_S,
    RUN_METADATA_MAX_PAIRS,
    RUN_TOOLS_MAX,
    TEMPERATURE_MAX,
    TOOL_OUTPUT_MAX,
    TOOL_OUTPUTS_MAX,
    TOOLS_MAX,
    TOP_P_MAX,
)
from schemas.strings import TEXT, Id, JsonObject, Name, TextOrObject
from schemas.tools import CodeInterpreterTool, FileSearchTool, FlatFunctionTool, FunctionTool, Tool

Instructions = Annotated[str, StringConstraints(max_length=INSTRUCTIONS_MAX), TEXT]
"""Instructions for a run: free text of at most 256,000 characters."""


class RunStrategy(StrEnum):
    """What to do when the thread or conversation already has an active run."""

    ENQUEUE = "enqueue"
    """Wait: jobs on one thread or conversation run one at a time, in submission order."""
    REJECT = "reject"
    """Fail at once with the error code ``thread_busy``."""
    INTERRUPT = "interrupt"
    """Cancel the active run, then start this one."""


class AttachmentTool(BaseModel):
    """A tool an attached file is added to."""

    model_config = _STRICT

    type: Literal["code_interpreter", "file_search"]


class Attachment(BaseModel):
    """A file attached to a message (Assistants backend)."""

    model_config = _STRICT

    file_id: Id
    tools: list[AttachmentTool]


class InputMessage(BaseModel):
    """A message added before the run (Assistants) or given as input (Responses)."""

    model_config = _STRICT

    role: Literal["user", "assistant"]
    content: Annotated[str, StringConstraints(min_length=1, max_length=MESSAGE_CONTENT_MAX), TEXT]
    attachments: list[Attachment] | None = Field(default=None, description="Assistants backend only.")
    metadata: Metadata | None = None


class ResponseFormat(BaseModel):
    """An Assistants response format other than ``"auto"``."""

    model_config = _STRICT

    type: Literal["text", "json_object", "json_schema"]
    json_schema: JsonObject | None = Field(
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

    id: Id
    variables: dict[Name, TextOrObject] | None = None
    version: Name | None = None


def _tool_choice_tag(value: Any) -> str:
    return "mode" if isinstance(value, str) else "object"


ToolChoice = Annotated[
    Annotated[Literal["none", "auto", "required"], Tag("mode")] | Annotated[JsonObject, Tag("object")],
    Discriminator(_tool_choice_tag),
]
"""``"none"``, ``"auto"``, ``"required"`` or an object naming a tool (one error for the shape given)."""


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
RESPONSES_OWN_FIELDS = {
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
    RESPONSES_CREATE_PARAMS - set(RESPONSES_OWN_FIELDS) - set(_RESPONSES_SYSTEM_PARAMS)
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
    assistant_id: Id | None = Field(default=None, description="Required on the assistants backend.")
    thread_id: Id | None = Field(
        default=None, description="Assistants: an existing thread; None creates one."
    )
    conversation_id: Id | None = Field(
        default=None,
        description="Responses: an existing conversation; None creates one (unless previous_response_id).",
    )
    messages: Annotated[list[InputMessage], _check_item_count("messages", MESSAGES_MAX, "messages")] = Field(
        default_factory=list,
        max_length=MESSAGES_MAX,
        description="Added before the run (a new thread's initial messages); the input on Responses.",
    )
    # Overrides the Assistants run create API accepts; most also apply to Responses.
    instructions: Instructions | None = None
    additional_instructions: Instructions | None = None
    model: NonEmptyStr | None = None
    tools: Annotated[list[Tool], MaxLen(TOOLS_MAX)] | None = None
    temperature: float | None = Field(default=None, ge=0, le=TEMPERATURE_MAX)
    top_p: float | None = Field(default=None, ge=0, le=TOP_P_MAX)
    max_prompt_tokens: int | None = Field(default=None, ge=MIN_PROMPT_TOKENS)
    max_completion_tokens: int | None = Field(default=None, ge=MIN_COMPLETION_TOKENS)
    response_format: ResponseFormatOption | None = None
    truncation_strategy: TruncationStrategy | None = None
    parallel_tool_calls: bool | None = None
    tool_choice: ToolChoice | None = None
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
    previous_response_id: Id | None = None
    store: bool | None = Field(
        default=None, description="Must not be false: background responses are stored."
    )
    text: JsonObject | None = None
    reasoning: JsonObject | None = None
    truncation: Literal["auto", "disabled"] | None = None
    include: list[NonEmptyStr] | None = None
    service_tier: Literal["auto", "default", "flex", "scale", "priority", "fast", "ultrafast"] | None = None
    response_options: JsonObject | None = Field(
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

    @field_validator("assistant_id", mode="before")
    @classmethod
    def _assistant_id_not_empty(cls, value: Any) -> Any:
        # Before the Id rule, so a blank id is called empty rather than refused for its spaces.
        if isinstance(value, str) and not value.strip():
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
    def _fields_fit_together(self, info: ValidationInfo) -> Self:
        if not is_stored(info):
            self._check_rules()
        return self

    def _check_rules(self) -> None:
        """The rules between fields and of the chosen backend; every problem in one error."""
        problems = _Problems()
        _check_any_backend(self, problems)
        if self.backend is RunBackend.ASSISTANTS:
            _check_assistants(self, problems)
        elif self.backend is RunBackend.RESPONSES:
            _check_responses(self, problems)
        _check_request_size(self, REQUEST_BYTES_MAX, problems)
        problems.raise_if_any(type(self).__name__)

    def with_backend(self, default: RunBackend) -> "RunRequest":
        """A copy with the backend filled in (``default`` unless one was given), checked against that
        backend's rules (the fields themselves were checked when this request was parsed).

        Raises ``pydantic.ValidationError`` when the request does not suit that backend.
        """
        if self.backend is not None:
            return self
        chosen = self.model_copy(update={"backend": default})
        chosen._check_rules()
        return chosen

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
        if key in RESPONSES_OWN_FIELDS:
            message = f"response_options: {key} has its own field, set {RESPONSES_OWN_FIELDS[key]} instead"
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
    _check_tools(tools, problems, _assistants_tool_problem)


def _check_tools(tools: Sequence[Any], problems: _Problems, problem_of: Callable[[Any], str | None]) -> None:
    """Report each tool the backend's rule ``problem_of`` refuses, by its index."""
    for index, tool in enumerate(tools):
        problem = problem_of(tool)
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
    _check_tools(request.tools or [], problems, _responses_tool_problem)


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

    tool_call_id: Id
    output: Annotated[str, StringConstraints(max_length=TOOL_OUTPUT_MAX), TEXT]


class ToolOutputsRequest(BaseModel):
    """Answers for the tool calls a run job is waiting on."""

    model_config = _STRICT

    job_id: Id
    tool_outputs: list[ToolOutput] = Field(min_length=1, max_length=TOOL_OUTPUTS_MAX)

    @model_validator(mode="after")
    def _one_output_per_call(self, info: ValidationInfo) -> Self:
        if is_stored(info):
            return self
        problems = _Problems()
        ids = [output.tool_call_id for output in self.tool_outputs]
        for index, value, first in _duplicates(ids):
            message = f"tool_outputs: duplicate tool_call_id {value!r} (also at index {first})"
            problems.add(("tool_outputs", index, "tool_call_id"), "duplicate", message, value)
        _check_request_size(self, REQUEST_BYTES_MAX, problems)
        problems.raise_if_any(type(self).__name__)
        return self
