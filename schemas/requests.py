"""What a producer may ask of the system: the public face of the job request models.

Requests travel as JSON through Redis and Celery, so every model round-trips through
``model_dump(mode="json")`` and ``model_validate``. Bad input raises ``pydantic.ValidationError`` whose
errors carry the bad field in ``loc`` and the limit in the message; checks that need the file system
(paths) or the worker's configuration (the default backend) are left to the worker, which can reuse
``path_problem`` and ``RunRequest.with_backend``. The models live in one module per job kind
(``schemas.run``, ``schemas.index``, ``schemas.cleanup``, with ``schemas.tools``, ``schemas.common`` and
``schemas.strings``, the characters each string field refuses, beneath them); this module re-exports them
and holds what spans every kind: ``JobRequest``, ``parse_request`` and ``json_schemas``. Every string field
refuses NUL and lone surrogates, ids, names, paths and keys also control characters, and a whole request
is capped in size (``schemas.limits``).
"""

from collections.abc import Mapping
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from schemas.backends import RunBackend
from schemas.cleanup import CleanupRequest, CleanupTarget
from schemas.common import (
    Attributes,
    AttributeValue,
    FunctionName,
    IdempotencyKey,
    Loc,
    Metadata,
    NonEmptyStr,
)
from schemas.index import (
    AutoChunking,
    ChunkingStrategy,
    ExpiresAfter,
    NewVectorStore,
    StaticChunking,
    StaticChunkingConfig,
    VectorStoreBatchRequest,
    path_problem,
)
from schemas.run import (
    ASSISTANTS_ONLY_FIELDS,
    RESPONSE_OPTIONS_ALLOWED,
    RESPONSES_ONLY_FIELDS,
    RESPONSES_OWN_FIELDS,
    Attachment,
    AttachmentTool,
    InputMessage,
    PromptRef,
    ResponseFormat,
    ResponseFormatOption,
    RunRequest,
    RunStrategy,
    ToolOutput,
    ToolOutputsRequest,
    TruncationStrategy,
)
from schemas.tools import (
    CodeInterpreterTool,
    FileSearchSettings,
    FileSearchTool,
    FlatFunctionTool,
    FunctionDefinition,
    FunctionTool,
    Tool,
)

__all__ = [
    "ASSISTANTS_ONLY_FIELDS",
    "RESPONSES_ONLY_FIELDS",
    "RESPONSES_OWN_FIELDS",
    "RESPONSE_OPTIONS_ALLOWED",
    "Attachment",
    "AttachmentTool",
    "AttributeValue",
    "Attributes",
    "AutoChunking",
    "ChunkingStrategy",
    "CleanupRequest",
    "CleanupTarget",
    "CodeInterpreterTool",
    "ExpiresAfter",
    "FileSearchSettings",
    "FileSearchTool",
    "FlatFunctionTool",
    "FunctionDefinition",
    "FunctionName",
    "FunctionTool",
    "IdempotencyKey",
    "InputMessage",
    "JobRequest",
    "Loc",
    "Metadata",
    "NewVectorStore",
    "NonEmptyStr",
    "PromptRef",
    "ResponseFormat",
    "ResponseFormatOption",
    "RunBackend",
    "RunRequest",
    "RunStrategy",
    "StaticChunking",
    "StaticChunkingConfig",
    "Tool",
    "ToolOutput",
    "ToolOutputsRequest",
    "TruncationStrategy",
    "VectorStoreBatchRequest",
    "json_schemas",
    "parse_request",
    "path_problem",
]

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
