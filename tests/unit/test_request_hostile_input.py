"""Hostile input: characters the API, JSON or the file system cannot take, and requests too big to carry.

Each rule is checked on every string field it covers, so a field added without its rule shows up here:
the error must land at that field's loc and say which character was refused, where, and why.
"""

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jsonschema
import pytest
from helpers import only_error

from schemas.limits import INDEX_REQUEST_BYTES_MAX, JSON_DEPTH_MAX, MESSAGES_MAX, REQUEST_BYTES_MAX
from schemas.requests import RunRequest, ToolOutputsRequest, json_schemas, parse_request

NUL_REASON = "NUL is refused in every string"
SURROGATE_REASON = "a lone UTF-16 surrogate cannot be encoded as UTF-8"
CONTROL_REASON = "control characters are refused in ids, names, paths and keys"
URL_REASON = "ids go into URL paths, so whitespace, /, \\, ?, # and % are refused in them"


def run(**fields: Any) -> dict[str, Any]:
    """A run request for the assistants backend (the backend is left to the worker)."""
    return {"kind": "run", "assistant_id": "asst_1", **fields}


def responses(**fields: Any) -> dict[str, Any]:
    """A run request for the responses backend."""
    return {"kind": "run", "backend": "responses", "model": "gpt-4o", **fields}


def index(**fields: Any) -> dict[str, Any]:
    """An indexing request into an existing store."""
    return {"kind": "index", "vector_store_id": "vs_1", "file_ids": ["file-1"], **fields}


def tool_outputs(job_id: str = "job_1", call_id: str = "call_1", output: str = "42") -> ToolOutputsRequest:
    """A tool-outputs request."""
    return ToolOutputsRequest.model_validate(
        {"job_id": job_id, "tool_outputs": [{"tool_call_id": call_id, "output": output}]}
    )


@dataclass(frozen=True)
class Field:
    """One string field of a request: how to put a value there, where its errors land, what they call it."""

    name: str
    sort: str
    """``id``, ``name`` (names, keys, paths), ``text`` or ``json`` (a string inside free-form JSON)."""
    build: Callable[[str], object]
    loc: Callable[[str], tuple[str | int, ...]]
    label: str

    def __str__(self) -> str:
        return self.name


def shown(key: str) -> str:
    """A dict key as pydantic's loc holds it: a surrogate it cannot encode becomes replacement characters."""
    return key.encode("utf-8", "surrogatepass").decode("utf-8", "replace")


def at(*loc: str | int) -> Callable[[str], tuple[str | int, ...]]:
    """A loc that does not depend on the value."""
    return lambda _: loc


def parsed(data: Callable[[str], dict[str, Any]]) -> Callable[[str], object]:
    """Build by parsing the request `data` makes of the value."""
    return lambda value: parse_request(data(value))


FIELDS = [
    # Ids of OpenAI objects and jobs.
    Field(
        "assistant_id", "id", parsed(lambda v: run(assistant_id=v)), at("run", "assistant_id"), "assistant_id"
    ),
    Field("thread_id", "id", parsed(lambda v: run(thread_id=v)), at("run", "thread_id"), "thread_id"),
    Field(
        "conversation_id",
        "id",
        parsed(lambda v: responses(conversation_id=v)),
        at("run", "conversation_id"),
        "conversation_id",
    ),
    Field(
        "previous_response_id",
        "id",
        parsed(lambda v: responses(previous_response_id=v)),
        at("run", "previous_response_id"),
        "previous_response_id",
    ),
    Field(
        "attachment file_id",
        "id",
        parsed(
            lambda v: run(
                messages=[{"role": "user", "content": "hi", "attachments": [{"file_id": v, "tools": []}]}]
            )
        ),
        at("run", "messages", 0, "attachments", 0, "file_id"),
        "file_id",
    ),
    Field(
        "file_search vector_store_ids",
        "id",
        parsed(lambda v: responses(tools=[{"type": "file_search", "vector_store_ids": [v]}])),
        at("run", "tools", 0, "FileSearchTool", "vector_store_ids", 0),
        "vector_store_ids",
    ),
    Field(
        "code_interpreter container",
        "id",
        parsed(lambda v: responses(tools=[{"type": "code_interpreter", "container": v}])),
        at("run", "tools", 0, "CodeInterpreterTool", "container", "text"),
        "container",
    ),
    Field("prompt id", "id", parsed(lambda v: responses(prompt={"id": v})), at("run", "prompt", "id"), "id"),
    Field(
        "vector_store_id",
        "id",
        parsed(lambda v: index(vector_store_id=v)),
        at("index", "vector_store_id"),
        "vector_store_id",
    ),
    Field("file_ids", "id", parsed(lambda v: index(file_ids=[v])), at("index", "file_ids", 0), "file_ids"),
    Field("job_id", "id", lambda v: tool_outputs(job_id=v), at("job_id"), "job_id"),
    Field(
        "tool_call_id",
        "id",
        lambda v: tool_outputs(call_id=v),
        at("tool_outputs", 0, "tool_call_id"),
        "tool_call_id",
    ),
    # Names, keys and paths.
    Field("model", "name", parsed(lambda v: run(model=v)), at("run", "model"), "model"),
    Field("include", "name", parsed(lambda v: responses(include=[v])), at("run", "include", 0), "include"),
    Field(
        "prompt version",
        "name",
        parsed(lambda v: responses(prompt={"id": "pmpt_1", "version": v})),
        at("run", "prompt", "version"),
        "version",
    ),
    Field(
        "prompt variable name",
        "name",
        parsed(lambda v: responses(prompt={"id": "pmpt_1", "variables": {v: "Oslo"}})),
        lambda v: ("run", "prompt", "variables", shown(v), "[key]"),
        "variables",
    ),
    Field(
        "function name",
        "name",
        parsed(lambda v: run(tools=[{"type": "function", "function": {"name": v}}])),
        at("run", "tools", 0, "FunctionTool", "function", "name"),
        "name",
    ),
    Field(
        "responses function name",
        "name",
        parsed(lambda v: responses(tools=[{"type": "function", "name": v}])),
        at("run", "tools", 0, "FlatFunctionTool", "name"),
        "name",
    ),
    Field(
        "run metadata key",
        "name",
        parsed(lambda v: run(metadata={v: "x"})),
        lambda v: ("run", "metadata", shown(v), "[key]"),
        "metadata",
    ),
    Field(
        "message metadata key",
        "name",
        parsed(lambda v: run(messages=[{"role": "user", "content": "hi", "metadata": {v: "x"}}])),
        lambda v: ("run", "messages", 0, "metadata", shown(v), "[key]"),
        "metadata",
    ),
    Field(
        "store metadata key",
        "name",
        parsed(lambda v: {"kind": "index", "new_store": {"metadata": {v: "x"}}, "file_ids": ["file-1"]}),
        lambda v: ("index", "new_store", "metadata", shown(v), "[key]"),
        "metadata",
    ),
    Field(
        "store name",
        "name",
        parsed(lambda v: {"kind": "index", "new_store": {"name": v}, "file_ids": ["file-1"]}),
        at("index", "new_store", "name"),
        "name",
    ),
    Field("paths", "name", parsed(lambda v: index(paths=[v])), at("index", "paths", 0), "paths"),
    Field(
        "attribute key",
        "name",
        parsed(lambda v: index(attributes={v: 1})),
        lambda v: ("index", "attributes", shown(v), "[key]"),
        "attributes",
    ),
    Field(
        "run idempotency_key",
        "name",
        parsed(lambda v: run(idempotency_key=v)),
        at("run", "idempotency_key"),
        "idempotency_key",
    ),
    Field(
        "index idempotency_key",
        "name",
        parsed(lambda v: index(idempotency_key=v)),
        at("index", "idempotency_key"),
        "idempotency_key",
    ),
    Field(
        "cleanup idempotency_key",
        "name",
        parsed(lambda v: {"kind": "cleanup", "idempotency_key": v}),
        at("cleanup", "idempotency_key"),
        "idempotency_key",
    ),
    # Free text.
    Field(
        "message content",
        "text",
        parsed(lambda v: run(messages=[{"role": "user", "content": v}])),
        at("run", "messages", 0, "content"),
        "content",
    ),
    Field(
        "instructions",
        "text",
        parsed(lambda v: run(instructions=v)),
        at("run", "instructions"),
        "instructions",
    ),
    Field(
        "additional_instructions",
        "text",
        parsed(lambda v: run(additional_instructions=v)),
        at("run", "additional_instructions"),
        "additional_instructions",
    ),
    Field(
        "metadata value",
        "text",
        parsed(lambda v: run(metadata={"k": v})),
        at("run", "metadata", "k"),
        "metadata",
    ),
    Field(
        "attribute value",
        "text",
        parsed(lambda v: index(attributes={"k": v})),
        at("index", "attributes", "k"),
        "attributes",
    ),
    Field(
        "store description",
        "text",
        parsed(lambda v: {"kind": "index", "new_store": {"description": v}, "file_ids": ["file-1"]}),
        at("index", "new_store", "description"),
        "description",
    ),
    Field(
        "function description",
        "text",
        parsed(lambda v: run(tools=[{"type": "function", "function": {"name": "f", "description": v}}])),
        at("run", "tools", 0, "FunctionTool", "function", "description"),
        "description",
    ),
    Field(
        "prompt variable value",
        "text",
        parsed(lambda v: responses(prompt={"id": "pmpt_1", "variables": {"city": v}})),
        at("run", "prompt", "variables", "city", "text"),
        "variables",
    ),
    Field("tool output", "text", lambda v: tool_outputs(output=v), at("tool_outputs", 0, "output"), "output"),
    # Strings inside free-form JSON options.
    Field(
        "text option",
        "json",
        parsed(lambda v: responses(text={"format": {"type": v}})),
        at("run", "text", "format", "type"),
        "text['format']['type']",
    ),
    Field(
        "response_options",
        "json",
        parsed(lambda v: responses(response_options={"prompt_cache_key": v})),
        at("run", "response_options", "prompt_cache_key"),
        "response_options['prompt_cache_key']",
    ),
    Field(
        "function parameters",
        "json",
        parsed(
            lambda v: run(tools=[{"type": "function", "function": {"name": "f", "parameters": {"title": v}}}])
        ),
        at("run", "tools", 0, "FunctionTool", "function", "parameters", "title"),
        "parameters['title']",
    ),
    Field(
        "other tool",
        "json",
        parsed(lambda v: responses(tools=[{"type": "web_search", "search_context_size": v}])),
        at("run", "tools", 0, "OtherTool", "search_context_size"),
        "tools['search_context_size']",
    ),
    Field(
        "tool_choice",
        "json",
        parsed(lambda v: run(tool_choice={"type": "function", "function": {"name": v}})),
        at("run", "tool_choice", "object", "function", "name"),
        "tool_choice['function']['name']",
    ),
    Field(
        "json_schema",
        "json",
        parsed(lambda v: run(response_format={"type": "json_schema", "json_schema": {"name": v}})),
        at("run", "response_format", "ResponseFormat", "json_schema", "name"),
        "json_schema['name']",
    ),
]
IDENTIFIERS = [field for field in FIELDS if field.sort in ("id", "name")]
FREE_TEXT = [field for field in FIELDS if field.sort in ("text", "json")]
IDS = [field for field in FIELDS if field.sort == "id"]


def assert_refused(field: Field, char: str, reason: str) -> None:
    """`field` holding `char` at index 1 is refused at its loc, naming the field, the character and why."""
    value = f"x{char}y"

    error = only_error(lambda: field.build(value))

    assert error["loc"] == field.loc(value)
    assert error["msg"] == f"{field.label}: character {char!a} at index 1; {reason}"


# --- Characters -------------------------------------------------------------------------------------


@pytest.mark.parametrize("field", FIELDS, ids=str)
def test_given_a_nul_in_any_string_field_when_parsed_then_it_is_refused_at_that_field(field: Field) -> None:
    assert_refused(field, "\x00", NUL_REASON)


@pytest.mark.parametrize("field", FIELDS, ids=str)
def test_given_a_lone_surrogate_in_any_string_field_when_parsed_then_it_is_refused_as_unencodable(
    field: Field,
) -> None:
    assert_refused(field, "\ud800", SURROGATE_REASON)


@pytest.mark.parametrize("field", IDENTIFIERS, ids=str)
@pytest.mark.parametrize("char", ["\n", "\x1b", "\x01"], ids=["newline", "escape", "start-of-heading"])
def test_given_a_control_character_in_an_id_name_path_or_key_when_parsed_then_it_is_refused(
    field: Field, char: str
) -> None:
    assert_refused(field, char, CONTROL_REASON)


@pytest.mark.parametrize("field", FREE_TEXT, ids=str)
def test_given_tab_newline_and_cr_in_free_text_when_parsed_then_they_are_kept(field: Field) -> None:
    value = "line one\r\n\tline two\n"

    field.build(value)


@pytest.mark.parametrize("field", IDS, ids=str)
def test_given_a_slash_in_an_id_when_parsed_then_it_is_refused_because_ids_go_into_url_paths(
    field: Field,
) -> None:
    assert_refused(field, "/", URL_REASON)


@pytest.mark.parametrize("char", [" ", "\\", "?", "#", "%", "\u00a0"])
def test_given_a_character_that_changes_a_url_in_a_thread_id_when_parsed_then_it_is_refused(
    char: str,
) -> None:
    thread_id = next(field for field in FIELDS if field.name == "thread_id")

    assert_refused(thread_id, char, URL_REASON)


@pytest.mark.parametrize("value", [".", ".."])
def test_given_a_dot_segment_as_an_id_when_parsed_then_it_is_refused(value: str) -> None:
    error = only_error(lambda: parse_request(run(thread_id=value)))

    assert error["loc"] == ("run", "thread_id")
    assert error["msg"] == f"thread_id: {value!r} is refused as an id (a dot segment in a URL path)"


def test_given_real_openai_ids_and_names_when_parsed_then_they_are_accepted() -> None:
    request = parse_request(
        run(
            assistant_id="asst_abc123",
            thread_id="thread_abc-123",
            model="ft:gpt-4o-mini:my-org:custom:abc123",
            metadata={"team.name": "search & ranking", "emoji": "🚀 launch"},
            idempotency_key="order-42/attempt:1",
        )
    )

    assert isinstance(request, RunRequest)
    assert request.metadata == {"team.name": "search & ranking", "emoji": "🚀 launch"}


# --- Free-form JSON ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (float("nan"), "nan is not a JSON number"),
        (float("inf"), "inf is not a JSON number"),
        ({1, 2}, "a set is not a JSON value"),
        (b"bytes", "a bytes is not a JSON value"),
    ],
    ids=["nan", "infinity", "set", "bytes"],
)
def test_given_a_value_json_cannot_carry_in_an_option_when_parsed_then_it_is_refused(
    value: object, reason: str
) -> None:
    error = only_error(lambda: parse_request(responses(reasoning={"summary": [value]})))

    assert error["loc"] == ("run", "reasoning", "summary", 0)
    assert error["msg"] == f"reasoning['summary'][0]: {reason}"


def test_given_options_nested_past_the_depth_limit_when_parsed_then_the_limit_is_named() -> None:
    deep: dict[str, Any] = {}
    inner = deep
    for _ in range(JSON_DEPTH_MAX):
        inner["a"] = {}
        inner = inner["a"]

    error = only_error(lambda: parse_request(responses(text=deep)))

    assert error["loc"] == ("run", "text", *["a"] * JSON_DEPTH_MAX)
    assert error["msg"].endswith(f": nested deeper than {JSON_DEPTH_MAX} levels")


def test_given_a_cyclic_option_when_parsed_then_it_is_refused_instead_of_recursing_forever() -> None:
    cyclic: dict[str, Any] = {}
    cyclic["self"] = cyclic

    error = only_error(lambda: parse_request(responses(text=cyclic)))

    assert error["type"] == "json_depth"


# --- Size and count ---------------------------------------------------------------------------------


def test_given_100_messages_of_256000_characters_when_parsed_then_the_request_size_limit_is_named() -> None:
    messages = [{"role": "user", "content": "x" * 256_000}] * 100

    error = only_error(lambda: parse_request(run(messages=messages)))

    assert error["loc"] == ("run",)
    size = re.fullmatch(
        r"request: the request is ([\d,]+) bytes as JSON; at most 1,048,576 are accepted", error["msg"]
    )
    assert size is not None, error["msg"]
    assert int(size.group(1).replace(",", "")) > 25_600_000


def test_given_instructions_and_a_message_at_their_own_limits_when_parsed_then_the_size_cap_leaves_room() -> (
    None
):
    request = parse_request(
        run(instructions="i" * 256_000, messages=[{"role": "user", "content": "m" * 256_000}])
    )

    assert len(request.model_dump_json()) < REQUEST_BYTES_MAX


def test_given_one_message_too_many_when_parsed_then_the_count_limit_is_named() -> None:
    messages = [{"role": "user", "content": "hi"}] * (MESSAGES_MAX + 1)

    error = only_error(lambda: parse_request(run(messages=messages)))

    assert error["loc"] == ("run", "messages")
    assert error["msg"] == "messages: at most 100 messages, got 101"


def test_given_tool_outputs_larger_than_the_cap_when_validated_then_the_request_size_limit_is_named() -> None:
    outputs = [{"tool_call_id": f"call_{i}", "output": "o" * 400_000} for i in range(3)]

    error = only_error(
        lambda: ToolOutputsRequest.model_validate({"job_id": "job_1", "tool_outputs": outputs})
    )

    assert error["loc"] == ()
    assert error["msg"].startswith("request: the request is 1,200,")
    assert error["msg"].endswith("bytes as JSON; at most 1,048,576 are accepted")


def test_given_an_index_request_past_its_own_cap_when_parsed_then_that_limit_is_named() -> None:
    paths = [f"docs/{i:05d}-{'p' * 4000}.md" for i in range(INDEX_REQUEST_BYTES_MAX // 4000)]

    error = only_error(lambda: parse_request(index(paths=paths)))

    assert error["loc"] == ("index",)
    assert error["msg"].endswith("bytes as JSON; at most 16,777,216 are accepted")


def test_given_100000_real_file_ids_when_parsed_then_the_index_cap_leaves_room() -> None:
    file_ids = [f"file-{i:022d}" for i in range(100_000)]

    request = parse_request({"kind": "index", "vector_store_id": "vs_1", "file_ids": file_ids})

    assert len(request.model_dump_json()) < INDEX_REQUEST_BYTES_MAX


# --- JSON Schema ------------------------------------------------------------------------------------


def test_given_the_json_schema_when_a_producer_checks_a_nul_in_an_id_then_the_schema_refuses_it_too() -> None:
    schema = json_schemas()["RunRequest"]

    jsonschema.validate(json.loads(json.dumps(run(thread_id="thread_1"))), schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(run(thread_id="thread\x00_1"), schema)
