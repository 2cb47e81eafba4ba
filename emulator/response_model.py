"""A Responses-API response: its context, its output decided at creation, its status from the clock."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from emulator import answers
from emulator.profile import Profile
from emulator.state import Store, new_id
from emulator.vector_store_model import first_indexed_file

TERMINAL = frozenset({"completed", "failed", "incomplete", "cancelled"})


@dataclass(slots=True)
class ResponseRecord:
    """A response and the instants that decide its status."""

    id: str
    created: float
    background: bool
    settings: dict[str, Any]  # model, instructions, tools, metadata and the other echoed fields
    context: list[dict[str, Any]]  # every item the model saw: history plus this input
    output: list[dict[str, Any]]  # shown once completed
    outcome: str  # completed | failed | incomplete
    queued_until: float
    done_at: float
    usage: dict[str, Any]
    conversation_id: str | None = None
    cancelled_at: float | None = None
    input_ids: list[str] = field(default_factory=list)

    def status(self, now: float) -> str:
        """queued, in_progress, completed, failed, incomplete or cancelled at `now`."""
        if self.cancelled_at is not None:
            return "cancelled"
        if now < self.queued_until:
            return "queued"
        if now < self.done_at:
            return "in_progress"
        return self.outcome


def item_text(item: dict[str, Any]) -> str:
    """The text of a message item (string content or its text parts)."""
    content = item.get("content")
    if isinstance(content, str):
        return content
    return "\n".join(
        part.get("text", "") for part in content or [] if isinstance(part, dict) and "text" in part
    )


def _round_state(context: list[dict[str, Any]]) -> tuple[str, list[tuple[str, str]]]:
    """(latest user question, [(function name, output)] submitted since it)."""
    question, start = "", 0
    for index, item in enumerate(context):
        if item.get("type") == "message" and item.get("role") == "user":
            question, start = item_text(item), index
    names = {i["call_id"]: i["name"] for i in context if i.get("type") == "function_call"}
    outputs = [
        (names.get(i["call_id"], "function"), str(i.get("output", "")))
        for i in context[start:]
        if i.get("type") == "function_call_output"
    ]
    return question, outputs


def _draw_outcome(store: Store) -> str:
    profile: Profile = store.profile
    roll = store.rng.random()
    if roll < profile.p_response_failed:
        return "failed"
    if roll < profile.p_response_failed + profile.p_response_incomplete:
        return "incomplete"
    return "completed"


def _text_item(
    store: Store, text: str, tools: list[dict[str, Any]], status: str, now: float
) -> dict[str, Any]:
    annotations: list[dict[str, Any]] = []
    vs_ids = [v for t in tools if t.get("type") == "file_search" for v in t.get("vector_store_ids") or []]
    file_id = first_indexed_file(store, vs_ids, now) if vs_ids else None
    if file_id is not None:
        text = f"{text} {answers.citation_marker()}"
        filename = store.files[file_id].obj["filename"] if file_id in store.files else file_id
        annotations.append(
            {"type": "file_citation", "file_id": file_id, "filename": filename, "index": len(text)}
        )
    part = {"type": "output_text", "text": text, "annotations": annotations, "logprobs": []}
    return {"type": "message", "id": new_id("msg_"), "status": status, "role": "assistant", "content": [part]}


def decide_output(
    store: Store, context: list[dict[str, Any]], tools: list[dict[str, Any]], outcome: str, now: float
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The output items and usage: the next function call if one is due, else the final text."""
    question, outputs = _round_state(context)
    names = [t["name"] for t in tools if t.get("type") == "function" and isinstance(t.get("name"), str)]
    wanted = answers.called_functions(question, names)
    if outcome == "failed":
        items: list[dict[str, Any]] = []
        text = ""
    elif len(outputs) < len(wanted):
        name = wanted[len(outputs)]
        call = {
            "type": "function_call",
            "id": new_id("fc_"),
            "call_id": new_id("call_"),
            "name": name,
            "arguments": answers.function_arguments(question),
            "status": "completed",
        }
        items, text = [call], call["arguments"]
    else:
        text = answers.final_text(question, outputs)
        status = "completed" if outcome == "completed" else "incomplete"
        items = [_text_item(store, text, tools, status, now)]
    prompt, completion = answers.usage_numbers(store.profile, question, text)
    usage = {
        "input_tokens": prompt,
        "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
        "output_tokens": completion,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": prompt + completion,
    }
    return items, usage


def new_response(
    store: Store, settings: dict[str, Any], context: list[dict[str, Any]], background: bool
) -> ResponseRecord:
    """Create a response; a background one runs on the clock, a foreground one is done at once."""
    profile = store.profile
    now = store.now()
    duration = profile.response_duration.sample(store.rng)
    outcome = _draw_outcome(store)
    output, usage = decide_output(store, context, settings["tools"], outcome, now)
    queued_until = now + profile.response_queued_s if background else now
    return ResponseRecord(
        id=new_id("resp_"),
        created=now,
        background=background,
        settings=settings,
        context=context,
        output=output,
        outcome=outcome,
        queued_until=queued_until,
        done_at=queued_until + duration if background else now,
        usage=usage,
    )


def render_response(record: ResponseRecord, now: float) -> dict[str, Any]:
    """The API's Response object."""
    status = record.status(now)
    shown = status in ("completed", "incomplete")
    body = {
        "id": record.id,
        "object": "response",
        "created_at": int(record.created),
        "status": status,
        "completed_at": int(record.done_at) if status == "completed" else None,
        "background": record.background,
        "error": {"code": "server_error", "message": "The model failed to generate a response."}
        if status == "failed"
        else None,
        "incomplete_details": {"reason": "max_output_tokens"} if status == "incomplete" else None,
        "output": record.output if shown else [],
        "conversation": {"id": record.conversation_id} if record.conversation_id else None,
        **record.settings,
    }
    if shown:
        body["usage"] = record.usage
    return body


def ended_at(record: ResponseRecord, now: float) -> float | None:
    """When the response ended, or None while it is still going."""
    status = record.status(now)
    if status == "cancelled":
        return record.cancelled_at
    return record.done_at if status in TERMINAL else None


def precise_response(store: Store, record: ResponseRecord) -> dict[str, Any]:
    """Float timestamps and metadata for the admin API."""
    now = store.now()
    status = record.status(now)
    end = ended_at(record, now)
    return {
        "id": record.id,
        "status": status,
        "created_at_precise": record.created,
        "started_at_precise": record.queued_until,
        "ended_at_precise": end,
        "completed_at_precise": end if status == "completed" else None,
        "outcome": record.outcome,
        "metadata": record.settings.get("metadata", {}),
    }
