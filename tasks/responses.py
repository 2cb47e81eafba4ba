"""The `responses` backend: background responses on a conversation (the Assistants API's successor)."""

from __future__ import annotations

from typing import Any

import openai

from schemas.job import JobRecord, JobStatus, ToolCall
from schemas.requests import RESPONSES_OWN_FIELDS, RunRequest
from tasks.assistants import JOB_METADATA_KEY
from tasks.backends import Snapshot, usage_of
from worker.async_api import AsyncApi

# Create parameters the request carries under their own name, copied when set (metadata and the
# history are set apart, the rest comes through `response_options`).
_CREATE_FIELDS = frozenset(p for p, f in RESPONSES_OWN_FIELDS.items() if p == f) - {
    "metadata",
    "previous_response_id",
}


def _params(request: RunRequest, job_id: str) -> dict[str, Any]:
    fields = request.model_dump(mode="json", exclude_none=True, include=set(_CREATE_FIELDS))
    if request.reasoning_effort and "reasoning" not in fields:
        fields["reasoning"] = {"effort": request.reasoning_effort}
    return {
        **fields,
        **(request.response_options or {}),
        "background": True,
        "metadata": {**(request.metadata or {}), JOB_METADATA_KEY: job_id},
    }


def _history(request: RunRequest, remote: dict[str, Any]) -> dict[str, Any]:
    """Where the response continues from: the conversation, else the previous response."""
    if remote.get("conversation_id"):
        return {"conversation": remote["conversation_id"]}
    previous = remote.get("response_id") or request.previous_response_id
    return {"previous_response_id": previous} if previous else {}


class ResponsesBackend:
    """Background responses polled with ``responses.retrieve``."""

    name = "responses"
    webhooks = True
    """Whether a webhook announces the end of a remote run."""
    usage_per_round = True
    """Each response reports its own usage; a job's usage is their sum."""

    def lock_key(self, request: RunRequest, remote: dict[str, Any]) -> str | None:
        """The given conversation, or the one this job created."""
        return request.conversation_id or remote.get("conversation_id")

    async def prepare(self, api: AsyncApi, record: JobRecord, request: RunRequest) -> dict[str, Any]:
        """Create the conversation when none was given (and no previous response is named)."""
        if request.conversation_id or record.remote.get("conversation_id") or request.previous_response_id:
            return {}
        conversation = await api.post("/conversations", {"metadata": {JOB_METADATA_KEY: record.id}})
        return {"conversation_id": conversation["id"], "conversation_created": True}

    async def create(
        self, api: AsyncApi, record: JobRecord, request: RunRequest, maybe_created: bool
    ) -> dict[str, Any]:
        """Create the background response with the request's messages as input.

        The Responses API has no way to look a response up by its metadata, so a start killed inside
        the create call can leave one orphan response behind; the job itself still ends once.
        """
        remote = dict(record.remote)
        if request.conversation_id:
            remote["conversation_id"] = request.conversation_id
        items = [{"type": "message", "role": m.role, "content": m.content} for m in request.messages]
        body = {"input": items, **_history(request, remote), **_params(request, record.id)}
        response = await api.post("/responses", body)
        return {"conversation_id": remote.get("conversation_id"), "response_id": response["id"], "rounds": 1}

    def poll_path(self, remote: dict[str, Any]) -> str:
        """``/responses/{id}`` of the latest response."""
        return f"/responses/{remote['response_id']}"

    def snapshot(self, body: dict[str, Any]) -> Snapshot:
        """A response, normalized: a completed one whose output calls functions `requires_action`."""
        output = body.get("output") or []
        calls = [
            ToolCall(id=item["call_id"], name=item.get("name", ""), arguments=item.get("arguments", ""))
            for item in output
            if item.get("type") == "function_call"
        ]
        status = body["status"]
        if status == "completed" and calls:
            status = "requires_action"
        return Snapshot(
            status=status,
            tool_calls=calls,
            usage=usage_of(body.get("usage")),
            error=body.get("error"),
            incomplete=body.get("incomplete_details"),
            completed_at=body.get("completed_at"),
            output=output,
        )

    async def result(self, api: AsyncApi, record: JobRecord, snap: Snapshot) -> dict[str, Any]:
        """Text, annotations and file ids of the final response's message items (no extra request)."""
        texts: list[str] = []
        annotations: list[dict[str, Any]] = []
        file_ids: list[str] = []
        for item in snap.output:
            if item.get("type") != "message":
                continue
            for part in item.get("content") or []:
                if part.get("type") == "output_text":
                    texts.append(part.get("text", ""))
                    annotations.extend(_annotation(a) for a in part.get("annotations") or [])
        file_ids.extend(a["file_id"] for a in annotations if a["type"] == "container_file_citation")
        return {"text": "\n\n".join(texts), "annotations": annotations, "file_ids": file_ids}

    def submit_outputs(
        self, client: openai.OpenAI, record: JobRecord, request: RunRequest, outputs: list[dict[str, str]]
    ) -> dict[str, Any]:
        """Create the follow-up background response carrying ``function_call_output`` items."""
        items: Any = [
            {"type": "function_call_output", "call_id": o["tool_call_id"], "output": o["output"]}
            for o in outputs
        ]
        response = client.responses.create(
            input=items, **_history(request, record.remote), **_params(request, record.id)
        )
        return {"response_id": response.id, "rounds": int(record.remote.get("rounds", 1)) + 1}

    def cancel(self, client: openai.OpenAI, remote: dict[str, Any]) -> None:
        """``responses.cancel``."""
        client.responses.cancel(remote["response_id"])

    def cancellable(self, record: JobRecord) -> bool:
        """While the job waits for outputs its last response has completed: nothing to cancel."""
        return record.status != JobStatus.REQUIRES_ACTION


def _annotation(raw: dict[str, Any]) -> dict[str, Any]:
    """An annotation in the shape both backends report."""
    return {"type": raw.get("type"), "file_id": raw.get("file_id"), "index": raw.get("index")}
