"""Limits and allowed values that job requests are checked against.

The first part mirrors the OpenAI API (openapi.json, info.version 2.3.0, vendored in vendor/openai-openapi):
checking them when a job is submitted turns a 400 from OpenAI, minutes later in a worker, into an error
the producer sees at once. Where the spec states no bound, the comment says where the number comes from.
The second part holds this system's own bounds.
"""

from typing import Final

# --- OpenAI API -------------------------------------------------------------------------------------

# Metadata (runs, threads, messages, vector stores): at most this many key/value pairs.
METADATA_MAX_PAIRS: Final = 16
# Metadata keys: at most this many characters.
METADATA_KEY_MAX: Final = 64
# Metadata values: strings of at most this many characters.
METADATA_VALUE_MAX: Final = 512

# Vector store file attributes (VectorStoreFileAttributes.maxProperties): at most this many pairs.
ATTRIBUTES_MAX_PAIRS: Final = 16
# Attribute keys (propertyNames.maxLength): at most this many characters.
ATTRIBUTES_KEY_MAX: Final = 64
# Attribute string values: at most this many characters (numbers and booleans are also allowed).
ATTRIBUTES_VALUE_MAX: Final = 512

# Instructions (CreateAssistantRequest.instructions.maxLength); also used for additional_instructions.
INSTRUCTIONS_MAX: Final = 256_000
# Message text: openapi.json sets no maxLength on message content, so we use the instructions cap.
MESSAGE_CONTENT_MAX: Final = 256_000

# Tools on an assistant (CreateAssistantRequest.tools.maxItems): the cap for any one request.
TOOLS_MAX: Final = 128
# Tools overriding an assistant's for one run (CreateRunRequest.tools.maxItems): stricter than TOOLS_MAX.
RUN_TOOLS_MAX: Final = 20
# Function names: a-z, A-Z, 0-9, underscores and dashes, 1 to 64 characters (FunctionObject.name).
FUNCTION_NAME_PATTERN: Final = r"^[a-zA-Z0-9_-]{1,64}$"
# Assistants file_search tool: max_num_results lies between 1 and this (AssistantToolsFileSearch).
FILE_SEARCH_MAX_NUM_RESULTS: Final = 50

# Sampling temperature lies between 0 and this.
TEMPERATURE_MAX: Final = 2.0
# Nucleus sampling top_p lies between 0 and this.
TOP_P_MAX: Final = 1.0
# Assistants runs: max_prompt_tokens must be at least this (CreateRunRequest.max_prompt_tokens.minimum).
MIN_PROMPT_TOKENS: Final = 256
# Assistants runs: max_completion_tokens must be at least this.
MIN_COMPLETION_TOKENS: Final = 256
# Responses: max_output_tokens must be at least this (CreateResponse.max_output_tokens.minimum).
MIN_OUTPUT_TOKENS: Final = 16

# ReasoningEffort enum.
REASONING_EFFORTS: Final = ("none", "minimal", "low", "medium", "high", "xhigh", "max")
# ServiceTierResponses enum.
SERVICE_TIERS: Final = ("auto", "default", "flex", "scale", "priority", "fast", "ultrafast")
# Every property of CreateResponse (its allOf parts): what a Responses create call may carry at all.
RESPONSES_CREATE_PARAMS: Final = frozenset(
    {
        "background",
        "context_management",
        "conversation",
        "include",
        "input",
        "instructions",
        "max_output_tokens",
        "max_tool_calls",
        "metadata",
        "model",
        "moderation",
        "parallel_tool_calls",
        "previous_response_id",
        "prompt",
        "prompt_cache_key",
        "prompt_cache_options",
        "prompt_cache_retention",
        "reasoning",
        "safety_identifier",
        "service_tier",
        "store",
        "stream",
        "stream_options",
        "temperature",
        "text",
        "tool_choice",
        "tools",
        "top_logprobs",
        "top_p",
        "truncation",
        "user",
    }
)

# File batches (CreateVectorStoreFileBatchRequest.file_ids.maxItems): at most this many files per batch.
FILE_BATCH_MAX: Final = 2_000
# Largest file the Files API accepts for file_search: 512 MiB.
FILE_SIZE_MAX: Final = 512 * 1024 * 1024
# File extensions file_search accepts (OpenAI file search guide), lower case with the dot.
FILE_SEARCH_EXTENSIONS: Final = frozenset(
    {
        ".c",
        ".cpp",
        ".cs",
        ".css",
        ".doc",
        ".docx",
        ".go",
        ".html",
        ".java",
        ".js",
        ".json",
        ".md",
        ".pdf",
        ".php",
        ".pptx",
        ".py",
        ".rb",
        ".sh",
        ".tex",
        ".ts",
        ".txt",
    }
)
# Static chunking: max_chunk_size_tokens lies in this range (StaticChunkingStrategy).
CHUNK_SIZE_MIN: Final = 100
CHUNK_SIZE_MAX: Final = 4096
# Vector store expiry (VectorStoreExpirationAfter.days): between 1 and this many days.
EXPIRES_AFTER_DAYS_MAX: Final = 365

# --- This system ------------------------------------------------------------------------------------

# Metadata key the system writes into every run or response it starts, to find the job again.
RESERVED_METADATA_KEY: Final = "aj_job_id"
# So a run's own metadata may hold one pair fewer than the API allows.
RUN_METADATA_MAX_PAIRS: Final = METADATA_MAX_PAIRS - 1
# Messages one run request may carry. openapi.json sets no maxItems on CreateThreadRequest.messages,
# CreateRunRequest.additional_messages or CreateResponse.input (the only bound near them is 20 items per
# conversation items call, which the worker does not use). Ours: far more than a turn needs, enough to seed
# a thread with a short history; a longer history belongs in the thread or conversation, not in one job.
MESSAGES_MAX: Final = 100
# A request's whole size, in bytes of compact UTF-8 JSON (as it is stored). The API states no cap. Ours:
# the largest parts a run legitimately carries (instructions and a message of 256,000 characters each, or
# one tool output of TOOL_OUTPUT_MAX) fit; more is a mistake or an attack. The request lives in the job
# record, which every status read and finish step loads from Redis, and tool outputs cross the broker in
# a Celery message, so a 26 MB request would cost 26 MB on each of those.
REQUEST_BYTES_MAX: Final = 1024 * 1024
# The same for an indexing request, which may name INDEX_INPUTS_MAX files: 100,000 OpenAI file ids
# (~27 characters) take about 3 MB as JSON, and 16 MiB leaves room for 100,000 paths of ~160 bytes.
INDEX_REQUEST_BYTES_MAX: Final = 16 * 1024 * 1024
# How deep free-form JSON options (tool parameters, text, reasoning, response_options...) may nest.
# OpenAI caps structured-output schemas at a few levels of nesting (5 at launch, 10 later), about twice
# that in JSON; 64 leaves room, and stops a cyclic or hostile structure at submission rather than as a
# RecursionError in a worker's JSON encoder.
JSON_DEPTH_MAX: Final = 64
# Idempotency keys: 1 to this many characters (fits a Redis key with our prefix, and common HTTP practice).
IDEMPOTENCY_KEY_MAX: Final = 255
# One tool output, in characters. The API states no cap, but outputs travel through Redis and Celery and
# 512 Ki characters (~128k tokens) already fills most context windows, so more is surely a mistake.
TOOL_OUTPUT_MAX: Final = 512 * 1024
# Tool outputs submitted at once: far above the parallel calls a run asks for, low enough to bound a message.
TOOL_OUTPUTS_MAX: Final = 128
# Vector store name and description: openapi.json gives no bound; we use the assistant's.
VECTOR_STORE_NAME_MAX: Final = 256
VECTOR_STORE_DESCRIPTION_MAX: Final = 512
# Files (ids plus paths) one indexing job may take; the worker splits them into FILE_BATCH_MAX batches.
INDEX_INPUTS_MAX: Final = 100_000
# Extra rounds an indexing job may spend on files that failed.
RETRY_FAILED_MAX: Final = 5
# Longest deadline for a run job: one day.
RUN_DEADLINE_MAX_S: Final = 86_400.0
# Longest deadline for an indexing job: seven days (large stores take long to embed).
INDEX_DEADLINE_MAX_S: Final = 7 * 86_400.0
# Longest deadline for a clean-up job: one day.
CLEANUP_DEADLINE_MAX_S: Final = 86_400.0
