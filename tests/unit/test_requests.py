"""Job request models: what a producer may submit, and the errors it sees when it gets one wrong."""

import json
from typing import Any, get_args

import jsonschema
import pytest
from helpers import OPENAPI, errors_of, only_error
from pydantic import BaseModel, ValidationError

from schemas.context import STORED
from schemas.limits import (
    FILE_SEARCH_EXTENSIONS,
    FILE_SIZE_MAX,
    REASONING_EFFORTS,
    RESPONSES_CREATE_PARAMS,
    SERVICE_TIERS,
)
from schemas.requests import (
    CleanupRequest,
    CleanupTarget,
    FlatFunctionTool,
    FunctionTool,
    InputMessage,
    NewVectorStore,
    RunBackend,
    RunRequest,
    RunStrategy,
    StaticChunkingConfig,
    ToolOutputsRequest,
    VectorStoreBatchRequest,
    json_schemas,
    parse_request,
    path_problem,
)


def function_tool(name: str = "lookup") -> dict[str, Any]:
    """An Assistants-style function tool."""
    return {"type": "function", "function": {"name": name, "parameters": {"type": "object"}}}


def flat_function_tool(name: str = "lookup") -> dict[str, Any]:
    """A Responses-style function tool."""
    return {"type": "function", "name": name, "parameters": {"type": "object"}, "strict": True}


# --- Valid requests ---------------------------------------------------------------------------------


def test_given_minimal_requests_of_each_kind_when_parsed_then_defaults_apply() -> None:
    run = parse_request({"kind": "run", "assistant_id": "asst_1"})
    index = parse_request({"kind": "index", "vector_store_id": "vs_1", "file_ids": ["file-1"]})
    cleanup = parse_request({"kind": "cleanup"})

    assert isinstance(run, RunRequest)
    assert run.backend is None
    assert run.strategy is RunStrategy.ENQUEUE
    assert run.run_tools is True
    assert run.messages == []
    assert isinstance(index, VectorStoreBatchRequest)
    assert index.retry_failed == 1
    assert index.skip_bad_paths is False
    assert isinstance(cleanup, CleanupRequest)
    assert cleanup.targets == list(CleanupTarget)
    assert cleanup.dry_run is False
    assert cleanup.include_unmanaged is False


def test_given_a_minimal_tool_outputs_request_when_validated_then_it_is_accepted() -> None:
    request = ToolOutputsRequest.model_validate(
        {"job_id": "job-1", "tool_outputs": [{"tool_call_id": "call_1", "output": ""}]}
    )

    assert request.tool_outputs[0].tool_call_id == "call_1"


def test_given_a_responses_run_with_a_prompt_only_when_backend_applied_then_it_is_accepted() -> None:
    request = RunRequest(prompt={"id": "pmpt_1", "variables": {"city": "Oslo"}})

    resolved = request.with_backend(RunBackend.RESPONSES)

    assert resolved.backend is RunBackend.RESPONSES
    assert resolved.prompt is not None and resolved.prompt.variables == {"city": "Oslo"}


def test_given_a_request_without_kind_when_parsed_then_the_error_says_kind_is_needed() -> None:
    error = only_error(lambda: parse_request({"assistant_id": "asst_1"}))

    assert "kind" in error["msg"]


# --- Unknown fields and simple limits ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "loc"),
    [
        ({"kind": "run", "assistant_id": "a", "temprature": 1}, ("run", "temprature")),
        ({"kind": "index", "vector_store_id": "v", "file_ids": ["f"], "fileids": []}, ("index", "fileids")),
        ({"kind": "cleanup", "dryrun": True}, ("cleanup", "dryrun")),
        (
            {"kind": "run", "assistant_id": "a", "messages": [{"role": "user", "content": "hi", "x": 1}]},
            ("run", "messages", 0, "x"),
        ),
    ],
)
def test_given_an_unknown_field_when_parsed_then_the_error_names_it(
    data: dict[str, Any], loc: tuple[Any]
) -> None:
    error = only_error(lambda: parse_request(data))

    assert error["loc"] == loc
    assert error["type"] == "extra_forbidden"


def test_given_17_metadata_pairs_when_validated_then_error_names_metadata_and_limit() -> None:
    metadata = {f"key{i}": "value" for i in range(17)}

    error = only_error(lambda: InputMessage(role="user", content="hi", metadata=metadata))

    assert error["loc"] == ("metadata",)
    assert error["msg"] == "metadata: at most 16 pairs, got 17"


def test_given_16_metadata_pairs_on_a_run_when_validated_then_one_pair_is_reserved_for_the_job() -> None:
    metadata = {f"key{i}": "value" for i in range(16)}

    error = only_error(lambda: RunRequest(assistant_id="asst_1", metadata=metadata))

    assert error["loc"] == ("metadata",)
    assert error["msg"] == "metadata: at most 15 pairs on a run (aj_job_id takes the 16th), got 16"


def test_given_the_reserved_job_key_in_run_metadata_when_validated_then_it_is_refused() -> None:
    error = only_error(lambda: RunRequest(assistant_id="asst_1", metadata={"aj_job_id": "x"}))

    assert error["loc"] == ("metadata",)
    assert "aj_job_id is reserved" in error["msg"]


def test_given_a_65_character_metadata_key_when_validated_then_error_names_the_key_limit() -> None:
    key = "k" * 65

    error = only_error(lambda: NewVectorStore(metadata={key: "v"}))

    assert error["loc"] == ("metadata", key, "[key]")
    assert error["msg"] == "String should have at most 64 characters"


def test_given_a_513_character_metadata_value_when_validated_then_error_names_the_value_limit() -> None:
    error = only_error(lambda: NewVectorStore(metadata={"k": "v" * 513}))

    assert error["loc"] == ("metadata", "k")
    assert error["msg"] == "String should have at most 512 characters"


@pytest.mark.parametrize("assistant_id", ["", "   "])
def test_given_an_empty_assistant_id_when_validated_then_it_is_refused(assistant_id: str) -> None:
    error = only_error(lambda: RunRequest(assistant_id=assistant_id))

    assert error["loc"] == ("assistant_id",)
    assert error["msg"] == "assistant_id: must not be empty"


def test_given_129_tools_when_validated_then_error_names_tools_and_the_limit() -> None:
    tools = [flat_function_tool(f"f{i}") for i in range(129)]

    error = only_error(lambda: RunRequest(model="gpt-4o", tools=tools))

    assert error["loc"] == ("tools",)
    assert "at most 128 items" in error["msg"]


def test_given_21_tools_on_the_assistants_backend_when_validated_then_the_run_override_cap_applies() -> None:
    tools = [function_tool(f"f{i}") for i in range(21)]

    error = only_error(lambda: RunRequest(backend="assistants", assistant_id="a", tools=tools))

    assert error["loc"] == ("tools",)
    assert error["msg"] == "tools: at most 20 on the assistants backend (a run's override), got 21"


@pytest.mark.parametrize(
    ("field", "value", "limit_text"),
    [
        ("temperature", 3, "less than or equal to 2"),
        ("top_p", 1.5, "less than or equal to 1"),
        ("max_prompt_tokens", 255, "greater than or equal to 256"),
        ("max_completion_tokens", 10, "greater than or equal to 256"),
        ("deadline_s", 0, "greater than 0"),
        ("deadline_s", 86_401, "less than or equal to 86400"),
        ("idempotency_key", "", "at least 1 character"),
        ("idempotency_key", "x" * 256, "at most 255 characters"),
    ],
)
def test_given_a_value_past_its_limit_when_validated_then_error_names_field_and_limit(
    field: str, value: object, limit_text: str
) -> None:
    error = only_error(lambda: RunRequest.model_validate({"assistant_id": "a", field: value}))

    assert error["loc"] == (field,)
    assert limit_text in error["msg"]


def test_given_a_bad_function_name_when_validated_then_error_shows_the_allowed_pattern() -> None:
    error = only_error(lambda: RunRequest(assistant_id="a", tools=[function_tool("has space")]))

    assert error["loc"] == ("tools", 0, "FunctionTool", "function", "name")
    assert "^[a-zA-Z0-9_-]{1,64}$" in error["msg"]


def test_given_a_tool_without_type_when_validated_then_error_says_type_is_needed() -> None:
    error = only_error(lambda: RunRequest(model="gpt-4o", tools=[{"name": "f"}]))

    assert error["loc"] == ("tools", 0)
    assert "type" in error["msg"]


def test_given_json_schema_format_without_schema_when_validated_then_error_names_json_schema() -> None:
    error = only_error(lambda: RunRequest(assistant_id="a", response_format={"type": "json_schema"}))

    assert error["loc"][-1] == "json_schema"
    assert error["msg"] == "json_schema: required with type json_schema"


# --- Backend rules ----------------------------------------------------------------------------------


def test_given_thread_and_conversation_when_validated_then_only_one_is_accepted() -> None:
    errors = errors_of(lambda: RunRequest(assistant_id="a", thread_id="thread_1", conversation_id="conv_1"))

    assert ("conversation_id",) in [error["loc"] for error in errors]
    assert any("not both" in error["msg"] for error in errors)


def test_given_conversation_and_previous_response_when_validated_then_they_are_refused_together() -> None:
    error = only_error(lambda: RunRequest(model="m", conversation_id="conv_1", previous_response_id="resp_1"))

    assert error["loc"] == ("previous_response_id",)
    assert "conversation_id" in error["msg"]


def test_given_fields_of_both_backends_when_backend_unknown_then_no_backend_could_take_them() -> None:
    error = only_error(lambda: RunRequest(assistant_id="a", thread_id="thread_1", prompt={"id": "p"}))

    assert error["loc"] == ("prompt",)
    assert "no backend takes both" in error["msg"]


def test_given_no_assistant_when_the_worker_defaults_to_assistants_then_assistant_id_is_required() -> None:
    request = RunRequest(messages=[InputMessage(role="user", content="hi")])

    error = only_error(lambda: request.with_backend(RunBackend.ASSISTANTS))

    assert error["loc"] == ("assistant_id",)
    assert error["msg"] == "assistant_id: required on the assistants backend"


def test_given_an_assistant_run_when_the_worker_defaults_to_responses_then_each_wrong_field_is_named() -> (
    None
):
    request = RunRequest(assistant_id="asst_1", thread_id="thread_1", additional_instructions="be brief")

    errors = errors_of(lambda: request.with_backend(RunBackend.RESPONSES))

    messages = {error["loc"]: error["msg"] for error in errors}
    assert messages[("model",)] == "model: required on the responses backend unless prompt is given"
    assert messages[("assistant_id",)] == "assistant_id: only on the assistants backend, not responses"
    assert messages[("thread_id",)] == "thread_id: only on the assistants backend, not responses"
    assert messages[("additional_instructions",)].endswith("not responses")


def test_given_responses_fields_on_the_assistants_backend_when_validated_then_each_is_named() -> None:
    errors = errors_of(
        lambda: RunRequest(backend="assistants", assistant_id="a", max_output_tokens=100, store=True)
    )

    messages = {error["loc"]: error["msg"] for error in errors}
    assert messages == {
        ("max_output_tokens",): "max_output_tokens: only on the responses backend, not assistants",
        ("store",): "store: only on the responses backend, not assistants",
    }


def test_given_an_explicit_backend_when_with_backend_then_the_default_is_ignored() -> None:
    request = RunRequest(backend="responses", model="gpt-4o")

    resolved = request.with_backend(RunBackend.ASSISTANTS)

    assert resolved.backend is RunBackend.RESPONSES
    assert request.backend is RunBackend.RESPONSES


def test_given_a_valid_assistants_run_when_with_backend_then_every_field_is_kept() -> None:
    request = RunRequest(
        assistant_id="asst_1",
        thread_id="thread_1",
        messages=[{"role": "user", "content": "hi", "attachments": [{"file_id": "f", "tools": []}]}],
        tools=[function_tool(), {"type": "file_search", "file_search": {"max_num_results": 5}}],
        truncation_strategy={"type": "last_messages", "last_messages": 3},
        response_format={"type": "json_object"},
        strategy="interrupt",
    )

    resolved = request.with_backend(RunBackend.ASSISTANTS)

    assert resolved.backend is RunBackend.ASSISTANTS
    assert resolved.model_dump(exclude={"backend"}) == request.model_dump(exclude={"backend"})


@pytest.mark.parametrize(
    ("backend", "tool", "expected"),
    [
        ("assistants", flat_function_tool(), 'needs {"type": "function", "function"'),
        ("responses", function_tool(), 'needs {"type": "function", "name"'),
        ("responses", {"type": "file_search"}, "needs vector_store_ids"),
        ("assistants", {"type": "file_search", "vector_store_ids": ["vs"]}, "vector_store_ids only on"),
        ("responses", {"type": "code_interpreter"}, "needs a container"),
        ("assistants", {"type": "web_search"}, "not an Assistants tool"),
    ],
)
def test_given_a_tool_shaped_for_the_other_backend_when_validated_then_the_tool_is_named(
    backend: str, tool: dict[str, Any], expected: str
) -> None:
    target = {"assistant_id": "asst_1"} if backend == "assistants" else {"model": "gpt-4o"}

    error = only_error(lambda: RunRequest.model_validate({"backend": backend, "tools": [tool], **target}))

    assert error["loc"] == ("tools", 0)
    assert expected in error["msg"]


def test_given_responses_tools_when_validated_then_other_types_pass_through() -> None:
    tools = [
        flat_function_tool(),
        {"type": "file_search", "vector_store_ids": ["vs_1"], "max_num_results": 3},
        {"type": "code_interpreter", "container": {"type": "auto"}},
        {"type": "web_search", "search_context_size": "low"},
    ]

    request = RunRequest(backend="responses", model="gpt-4o", tools=tools)

    assert request.tools is not None
    assert isinstance(request.tools[0], FlatFunctionTool)
    assert request.tools[3] == {"type": "web_search", "search_context_size": "low"}


def test_given_attachments_on_the_responses_backend_when_validated_then_they_are_refused() -> None:
    message = {
        "role": "user",
        "content": "hi",
        "attachments": [{"file_id": "f", "tools": [{"type": "file_search"}]}],
    }

    error = only_error(lambda: RunRequest(backend="responses", model="m", messages=[message]))

    assert error["loc"] == ("messages", 0, "attachments")


def test_given_store_false_when_validated_then_it_is_refused_because_runs_are_background() -> None:
    error = only_error(lambda: RunRequest(backend="responses", model="m", store=False))

    assert error["loc"] == ("store",)
    assert "background" in error["msg"]


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        ("temperature", "has its own field, set temperature instead"),
        ("conversation", "set conversation_id instead"),
        ("input", "set messages instead"),
        ("background", "is set by the system"),
        ("stream", "is set by the system"),
        ("speed", "is not a Responses create parameter"),
    ],
)
def test_given_a_refused_response_option_when_validated_then_error_names_the_option(
    key: str, expected: str
) -> None:
    error = only_error(lambda: RunRequest(backend="responses", model="m", response_options={key: True}))

    assert error["loc"] == ("response_options", key)
    assert expected in error["msg"]


def test_given_allowed_response_options_when_validated_then_they_are_kept() -> None:
    options = {"prompt_cache_key": "k", "max_tool_calls": 3, "safety_identifier": "u1"}

    request = RunRequest(backend="responses", model="m", response_options=options)

    assert request.response_options == options


def test_given_reasoning_effort_twice_when_validated_then_it_is_refused() -> None:
    error = only_error(
        lambda: RunRequest(
            backend="responses", model="o3", reasoning_effort="low", reasoning={"effort": "high"}
        )
    )

    assert error["loc"] == ("reasoning_effort",)


# --- Tool outputs -----------------------------------------------------------------------------------


def test_given_a_duplicate_tool_call_id_when_validated_then_error_names_the_id() -> None:
    outputs = [{"tool_call_id": "call_1", "output": "a"}, {"tool_call_id": "call_1", "output": "b"}]

    error = only_error(lambda: ToolOutputsRequest(job_id="job-1", tool_outputs=outputs))

    assert error["loc"] == ("tool_outputs", 1, "tool_call_id")
    assert error["msg"] == "tool_outputs: duplicate tool_call_id 'call_1' (also at index 0)"


def test_given_no_tool_outputs_when_validated_then_at_least_one_is_required() -> None:
    error = only_error(lambda: ToolOutputsRequest(job_id="job-1", tool_outputs=[]))

    assert error["loc"] == ("tool_outputs",)
    assert "at least 1 item" in error["msg"]


# --- Vector store indexing --------------------------------------------------------------------------


def test_given_neither_store_target_when_validated_then_error_asks_for_exactly_one() -> None:
    error = only_error(lambda: VectorStoreBatchRequest(file_ids=["file-1"]))

    assert error["loc"] == ("vector_store_id",)
    assert error["msg"].endswith("got neither")


def test_given_both_store_targets_when_validated_then_error_asks_for_exactly_one() -> None:
    error = only_error(lambda: VectorStoreBatchRequest(vector_store_id="vs_1", new_store={}, file_ids=["f"]))

    assert error["msg"].endswith("got both")


def test_given_no_inputs_when_validated_then_at_least_one_file_or_path_is_required() -> None:
    error = only_error(lambda: VectorStoreBatchRequest(vector_store_id="vs_1"))

    assert error["loc"] == ("file_ids",)
    assert "at least one file id or path" in error["msg"]


def test_given_duplicate_file_ids_and_paths_when_validated_then_each_duplicate_is_named() -> None:
    errors = errors_of(
        lambda: VectorStoreBatchRequest(
            vector_store_id="vs_1", file_ids=["file-1", "file-2", "file-1"], paths=["a.md", "a.md"]
        )
    )

    messages = {error["loc"]: error["msg"] for error in errors}
    assert messages == {
        ("file_ids", 2): "file_ids: duplicate 'file-1' (also at index 0)",
        ("paths", 1): "paths: duplicate 'a.md' (also at index 0)",
    }


def test_given_paths_only_with_a_new_store_when_validated_then_paths_are_not_checked_here() -> None:
    request = VectorStoreBatchRequest(new_store={"name": "docs"}, paths=["/no/such/file.exe"])

    assert request.paths == ["/no/such/file.exe"]


def test_given_attributes_past_limits_when_validated_then_errors_name_attributes() -> None:
    too_many = {f"k{i}": i for i in range(17)}

    error = only_error(
        lambda: VectorStoreBatchRequest(vector_store_id="v", file_ids=["f"], attributes=too_many)
    )

    assert error["loc"] == ("attributes",)
    assert error["msg"] == "attributes: at most 16 pairs, got 17"


def test_given_mixed_attribute_values_when_validated_then_types_are_kept() -> None:
    attributes = {"s": "x", "n": 2, "f": 1.5, "b": True}

    request = VectorStoreBatchRequest(vector_store_id="v", file_ids=["f"], attributes=attributes)

    assert request.attributes == attributes
    assert type(request.attributes["b"]) is bool


def test_given_overlap_above_half_the_chunk_when_validated_then_error_names_overlap_and_limit() -> None:
    strategy = {"type": "static", "static": {"max_chunk_size_tokens": 800, "chunk_overlap_tokens": 401}}

    error = only_error(
        lambda: VectorStoreBatchRequest(vector_store_id="v", file_ids=["f"], chunking_strategy=strategy)
    )

    assert error["loc"] == ("chunking_strategy", "static", "static", "chunk_overlap_tokens")
    assert error["msg"] == "chunk_overlap_tokens: at most half of max_chunk_size_tokens (400), got 401"


def test_given_overlap_of_exactly_half_when_validated_then_it_is_accepted() -> None:
    config = StaticChunkingConfig(max_chunk_size_tokens=800, chunk_overlap_tokens=400)

    assert config.chunk_overlap_tokens == 400


def test_given_chunk_size_out_of_range_when_validated_then_error_names_the_range() -> None:
    error = only_error(lambda: StaticChunkingConfig(max_chunk_size_tokens=5000, chunk_overlap_tokens=0))

    assert error["loc"] == ("max_chunk_size_tokens",)
    assert "4096" in error["msg"]


def test_given_expiry_past_a_year_when_validated_then_error_names_days() -> None:
    error = only_error(lambda: NewVectorStore(expires_after={"days": 366}))

    assert error["loc"] == ("expires_after", "days")
    assert "365" in error["msg"]


@pytest.mark.parametrize(
    ("path", "size", "readable", "exists", "expected"),
    [
        ("notes.md", 10, True, True, None),
        ("REPORT.PDF", 10, True, True, None),
        ("gone.md", None, False, False, "missing"),
        ("secret.md", None, False, True, "not readable"),
        ("big.pdf", FILE_SIZE_MAX + 1, True, True, "larger than 512 MiB"),
        ("max.pdf", FILE_SIZE_MAX, True, True, None),
        ("empty.txt", 0, True, True, "empty"),
    ],
)
def test_given_a_path_when_checked_then_the_problem_is_described(
    path: str, size: int | None, readable: bool, exists: bool, expected: str | None
) -> None:
    assert path_problem(path, size=size, readable=readable, exists=exists) == expected


def test_given_an_unsupported_extension_when_checked_then_message_lists_accepted_ones() -> None:
    problem = path_problem("tool.exe", size=10, readable=True, exists=True)

    assert problem is not None
    assert problem.startswith("unsupported extension .exe (file_search accepts: ")
    assert all(extension in problem for extension in FILE_SEARCH_EXTENSIONS)
    assert str(path_problem("Makefile", size=10, readable=True, exists=True)).startswith("no file extension")


# --- Clean-up ---------------------------------------------------------------------------------------


def test_given_duplicate_cleanup_targets_when_validated_then_error_names_the_target() -> None:
    error = only_error(lambda: CleanupRequest(targets=["threads", "files", "threads"]))

    assert error["loc"] == ("targets", 2)
    assert error["msg"] == "targets: duplicate target 'threads' (also at index 0)"


def test_given_no_cleanup_targets_when_validated_then_at_least_one_is_required() -> None:
    error = only_error(lambda: CleanupRequest(targets=[]))

    assert error["loc"] == ("targets",)


def test_given_a_zero_idle_limit_when_validated_then_it_must_be_positive() -> None:
    error = only_error(lambda: CleanupRequest(idle_s=0))

    assert error["loc"] == ("idle_s",)


# --- Transport and schemas --------------------------------------------------------------------------

FULL_REQUESTS: list[BaseModel] = [
    RunRequest(
        backend="assistants",
        assistant_id="asst_1",
        thread_id="thread_1",
        messages=[{"role": "user", "content": "hi", "metadata": {"k": "v"}}],
        tools=[function_tool(), {"type": "code_interpreter"}],
        temperature=0.5,
        response_format="auto",
        tool_choice={"type": "function", "function": {"name": "lookup"}},
        reasoning_effort="low",
        metadata={"team": "search"},
        strategy="reject",
        deadline_s=600.5,
        idempotency_key="req-1",
    ),
    RunRequest(
        backend="responses",
        model="gpt-4o",
        prompt={"id": "pmpt_1", "variables": {"x": "1", "doc": {"type": "input_text", "text": "t"}}},
        tools=[flat_function_tool(), {"type": "web_search"}],
        text={"format": {"type": "text"}},
        include=["file_search_call.results"],
        service_tier="flex",
        response_options={"prompt_cache_key": "k"},
        run_tools=False,
    ),
    VectorStoreBatchRequest(
        new_store={
            "name": "docs",
            "expires_after": {"days": 7},
            "chunking_strategy": {
                "type": "static",
                "static": {"max_chunk_size_tokens": 400, "chunk_overlap_tokens": 0},
            },
        },
        file_ids=["file-1"],
        paths=["docs/a.md"],
        attributes={"lang": "en", "year": 2024, "draft": False},
        retry_failed=3,
        skip_bad_paths=True,
    ),
    CleanupRequest(targets=["threads", "jobs"], dry_run=True, idle_s=3600, include_unmanaged=True),
    ToolOutputsRequest(job_id="job-1", tool_outputs=[{"tool_call_id": "call_1", "output": "42"}]),
]


@pytest.mark.parametrize("request_model", FULL_REQUESTS, ids=lambda model: type(model).__name__)
def test_given_a_request_when_sent_as_json_then_it_comes_back_equal(request_model: BaseModel) -> None:
    wire = json.dumps(request_model.model_dump(mode="json"))

    received = type(request_model).model_validate(json.loads(wire))

    assert received == request_model
    if not isinstance(request_model, ToolOutputsRequest):
        assert parse_request(json.loads(wire)) == request_model


def test_given_the_json_schemas_when_listed_then_each_request_model_is_there() -> None:
    schemas = json_schemas()

    assert set(schemas) == {"RunRequest", "VectorStoreBatchRequest", "CleanupRequest", "ToolOutputsRequest"}
    assert schemas["RunRequest"]["additionalProperties"] is False


@pytest.mark.parametrize("request_model", FULL_REQUESTS, ids=lambda model: type(model).__name__)
def test_given_a_valid_request_when_checked_against_its_json_schema_then_it_passes(
    request_model: BaseModel,
) -> None:
    schema = json_schemas()[type(request_model).__name__]

    jsonschema.validate(request_model.model_dump(mode="json"), schema)


def test_given_assistants_and_responses_function_tools_when_parsed_then_each_gets_its_model() -> None:
    request = RunRequest(model="m", tools=[function_tool(), flat_function_tool()])

    assert request.tools is not None
    assert [type(tool) for tool in request.tools] == [FunctionTool, FlatFunctionTool]


def test_given_the_literal_enums_when_compared_with_limits_then_they_agree() -> None:
    fields = RunRequest.model_fields

    assert set(get_args(get_args(fields["reasoning_effort"].annotation)[0])) == set(REASONING_EFFORTS)
    assert set(get_args(get_args(fields["service_tier"].annotation)[0])) == set(SERVICE_TIERS)


def test_given_the_openai_spec_when_compared_then_the_responses_parameters_match_create_response() -> None:
    schemas = json.loads(OPENAPI.read_text())["components"]["schemas"]
    names: set[str] = set()

    def collect(schema: dict[str, Any]) -> None:
        if "$ref" in schema:
            collect(schemas[schema["$ref"].rsplit("/", 1)[-1]])
            return
        for part in schema.get("allOf", []):
            collect(part)
        names.update(schema.get("properties", {}))

    collect(schemas["CreateResponse"])

    assert names == RESPONSES_CREATE_PARAMS


def test_given_a_request_read_back_from_the_store_when_parsed_then_its_rules_are_not_run_again() -> None:
    # Given a run request as a record stores it (it passed every rule at submit)
    message = {"role": "user", "content": "x"}
    request = {"kind": "run", "backend": "responses", "model": "gpt-4o", "messages": [message]}
    stored = parse_request(request).model_dump(mode="json", exclude_none=True)
    # When a worker reads it back, the rules are skipped (one that would refuse it now changes nothing)...
    stored["messages"][0]["content"] = "a NUL \x00 here"
    assert RunRequest.model_validate(stored, context=STORED).messages[0].content == "a NUL \x00 here"
    # ...but the types are still checked, and the same data from a producer is refused
    with pytest.raises(ValidationError):
        RunRequest.model_validate({**stored, "deadline_s": "soon"}, context=STORED)
    with pytest.raises(ValidationError, match="NUL"):
        RunRequest.model_validate(stored)
