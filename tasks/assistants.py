"""The `assistants` backend: threads and runs (Assistants API v2)."""

from __future__ import annotations

import warnings
from typing import Any

import openai

from schemas.job import JobRecord, ToolCall
from schemas.requests import RunRequest
from tasks.backends import Snapshot, usage_of
from worker.async_api import AsyncApi

JOB_METADATA_KEY = "aj_job_id"
"""Run metadata key carrying our job id, so a retried start finds the run it created."""

# Overrides runs.create accepts, copied from the request when set.
_RUN_FIELDS = (
    "instructions",
    "additional_instructions",
    "model",
    "tools",
    "temperature",
    "top_p",
    "max_prompt_tokens",
    "max_completion_tokens",
    "response_format",
    "truncation_strategy",
    "parallel_tool_calls",
    "tool_choice",
    "reasoning_effort",
)


ASSISTANTS_DEPRECATION = "The Assistants API is deprecated"
"""The start of the warning every ``client.beta`` threads/runs/assistants call emits since the sunset."""


def quiet_assistants_deprecation() -> None:
    """Silence that one warning for this process: this backend exists for servers that still speak the
    Assistants API, and a worker would otherwise log it for every job. Called once by the composition
    root (and the demo); nothing else is silenced."""
    warnings.filterwarnings("ignore", message=ASSISTANTS_DEPRECATION, category=DeprecationWarning)
    # The SDK also marks the assistants resource's methods with a bare "deprecated".
    warnings.filterwarnings("ignore", message="deprecated$", category=DeprecationWarning)


def beta(client: openai.OpenAI) -> Any:
    """``client.beta``: threads, runs and assistants (see `quiet_assistants_deprecation`)."""
    return client.beta


def _messages(request: RunRequest) -> list[dict[str, Any]]:
    return [m.model_dump(mode="json", exclude_none=True) for m in request.messages]


class AssistantsBackend:
    """Threads and runs."""

    name = "assistants"
    webhooks = False
    """Whether a webhook announces the end of a remote run."""
    usage_per_round = False
    """A run reports its usage once, for all its rounds."""

    def lock_key(self, request: RunRequest, remote: dict[str, Any]) -> str | None:
        """The given thread, or the one this job created."""
        return request.thread_id or remote.get("thread_id")

    async def prepare(self, api: AsyncApi, record: JobRecord, request: RunRequest) -> dict[str, Any]:
        """Create the thread when none was given."""
        if request.thread_id or record.remote.get("thread_id"):
            return {}
        thread = await api.post("/threads", {"metadata": {JOB_METADATA_KEY: record.id}})
        return {"thread_id": thread["id"], "thread_created": True}

    async def create(
        self, api: AsyncApi, record: JobRecord, request: RunRequest, maybe_created: bool
    ) -> dict[str, Any]:
        """Create the run with the request's messages and overrides.

        A retry finds the run carrying this job id in its metadata instead of creating another.
        """
        thread_id = str(request.thread_id or record.remote["thread_id"])
        # Only when an earlier create's outcome is unknown (its worker died, its connection dropped)
        # can a run of this job exist already.
        existing = await self._find_run(api, thread_id, record.id) if maybe_created else None
        if existing:
            return {"thread_id": thread_id, "run_id": existing}
        body = request.model_dump(mode="json", include=set(_RUN_FIELDS), exclude_none=True)
        body["assistant_id"] = request.assistant_id
        body["metadata"] = {**(request.metadata or {}), JOB_METADATA_KEY: record.id}
        if request.messages:
            body["additional_messages"] = _messages(request)
        run = await api.post(f"/threads/{thread_id}/runs", body)
        return {"thread_id": thread_id, "run_id": run["id"]}

    @staticmethod
    async def _find_run(api: AsyncApi, thread_id: str, job_id: str) -> str | None:
        # One page is enough: our run, if any, is among the thread's newest (the thread was ours to hold).
        page = await api.get(f"/threads/{thread_id}/runs", {"limit": "20", "order": "desc"})
        for run in page.get("data") or []:
            if (run.get("metadata") or {}).get(JOB_METADATA_KEY) == job_id:
                return str(run["id"])
        return None

    def poll_path(self, remote: dict[str, Any]) -> str:
        """``/threads/{thread}/runs/{run}``."""
        return f"/threads/{remote['thread_id']}/runs/{remote['run_id']}"

    def snapshot(self, body: dict[str, Any]) -> Snapshot:
        """A run object, normalized."""
        calls = []
        action = body.get("required_action") or {}
        for call in (action.get("submit_tool_outputs") or {}).get("tool_calls") or []:
            fn = call.get("function") or {}
            calls.append(ToolCall(id=call["id"], name=fn.get("name", ""), arguments=fn.get("arguments", "")))
        return Snapshot(
            status=body["status"],
            tool_calls=calls,
            usage=usage_of(body.get("usage")),
            error=body.get("last_error"),
            incomplete=body.get("incomplete_details"),
            expires_at=body.get("expires_at"),
            completed_at=body.get("completed_at"),
        )

    async def result(self, api: AsyncApi, record: JobRecord, snap: Snapshot) -> dict[str, Any]:
        """The messages this run wrote: their text, annotations and file ids (every page of them)."""
        remote = record.remote
        texts: list[str] = []
        annotations: list[dict[str, Any]] = []
        file_ids: list[str] = []
        path = f"/threads/{remote['thread_id']}/messages"
        params = {"run_id": str(remote["run_id"]), "order": "asc", "limit": "100"}
        while True:
            page = await api.get(path, params)
            messages: list[dict[str, Any]] = page.get("data") or []
            for message in messages:
                if message.get("role") != "assistant":
                    continue
                for part in message.get("content") or []:
                    if part.get("type") == "text":
                        texts.append(part["text"]["value"])
                        annotations.extend(_annotation(a) for a in part["text"].get("annotations") or [])
                    elif part.get("type") == "image_file":
                        file_ids.append(part["image_file"]["file_id"])
                file_ids.extend(a["file_id"] for a in message.get("attachments") or [] if a.get("file_id"))
            if not (page.get("has_more") and messages):
                break
            params = {**params, "after": str(messages[-1]["id"])}
        return {"text": "\n\n".join(texts), "annotations": annotations, "file_ids": file_ids}

    def submit_outputs(
        self, client: openai.OpenAI, record: JobRecord, request: RunRequest, outputs: list[dict[str, str]]
    ) -> dict[str, Any]:
        """``runs.submit_tool_outputs``; the run id stays the same."""
        remote = record.remote
        beta(client).threads.runs.submit_tool_outputs(
            remote["run_id"], thread_id=remote["thread_id"], tool_outputs=outputs
        )
        return {}

    def cancel(self, client: openai.OpenAI, remote: dict[str, Any]) -> None:
        """``runs.cancel``."""
        beta(client).threads.runs.cancel(remote["run_id"], thread_id=remote["thread_id"])

    def cancellable(self, record: JobRecord) -> bool:
        """A run can be cancelled in every non-ended state, requires_action included."""
        return True


def _annotation(raw: dict[str, Any]) -> dict[str, Any]:
    """An annotation in the shape both backends report: type, file id, where it sits in the text."""
    cited = raw.get("file_citation") or raw.get("file_path") or {}
    return {"type": raw.get("type"), "file_id": cited.get("file_id"), "index": raw.get("end_index")}
