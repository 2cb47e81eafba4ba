"""What a run backend must do, and the normalized view of a remote run that the flow works on.

The flow in `tasks.run_flow` (threads, deadlines, tool calls, errors, finishing) is shared; a
backend only knows how to talk to its API: start, where to poll, how to read a poll, what the
result is, how to send tool outputs and how to cancel.
"""

from __future__ import annotations

from typing import Any, Protocol

import openai
from pydantic import BaseModel, Field

from schemas.job import JobRecord, ToolCall, Usage
from schemas.requests import RunRequest
from worker.async_api import AsyncApi

ACTIVE = frozenset({"queued", "in_progress", "cancelling"})
"""Remote statuses that mean: keep polling."""


class Snapshot(BaseModel):
    """A remote run or response as the flow needs it, the same for both backends."""

    status: str
    """queued, in_progress, cancelling, requires_action, completed, failed, cancelled, expired, incomplete."""
    tool_calls: list[ToolCall] = Field(default_factory=list)
    usage: Usage | None = None
    error: dict[str, Any] | None = None
    incomplete: dict[str, Any] | None = None
    expires_at: float | None = None
    completed_at: float | None = None
    output: list[dict[str, Any]] = Field(default_factory=list)
    """Responses only: the output items (the result is read from them, no second request)."""


class Backend(Protocol):
    """One way of running a model turn."""

    name: str
    usage_per_round: bool
    """True when each round reports its own usage (summed); False when the last report is the total."""
    webhooks: bool
    """True when OpenAI sends a webhook as the remote run ends (background responses do; runs do not)."""

    def lock_key(self, request: RunRequest, remote: dict[str, Any]) -> str | None:
        """The thread or conversation this job must hold while its run is active, when known."""
        ...

    async def prepare(self, api: AsyncApi, record: JobRecord, request: RunRequest) -> dict[str, Any]:
        """Create what the run needs first, when neither the request nor an earlier attempt has it (a
        thread or conversation); the remote ids to record before the run is created ({} for none)."""
        ...

    async def create(
        self, api: AsyncApi, record: JobRecord, request: RunRequest, maybe_created: bool
    ) -> dict[str, Any]:
        """Create the remote run on what `prepare` recorded (first looking for the one an earlier attempt
        may have made, when ``maybe_created`` and the API can tell); returns the remote ids to record."""
        ...

    def poll_path(self, remote: dict[str, Any]) -> str:
        """The API path the poller retrieves (relative to the base URL)."""
        ...

    def snapshot(self, body: dict[str, Any]) -> Snapshot:
        """Read a retrieved body (pure)."""
        ...

    async def result(self, api: AsyncApi, record: JobRecord, snap: Snapshot) -> dict[str, Any]:
        """What the run produced: text, annotations, file ids (no remote ids)."""
        ...

    def submit_outputs(
        self, client: openai.OpenAI, record: JobRecord, request: RunRequest, outputs: list[dict[str, str]]
    ) -> dict[str, Any]:
        """Send tool outputs; returns remote ids that changed (a new response id, say)."""
        ...

    def cancel(self, client: openai.OpenAI, remote: dict[str, Any]) -> None:
        """Ask the API to cancel the remote run."""
        ...

    def cancellable(self, record: JobRecord) -> bool:
        """Whether the job's remote run can still be cancelled (else the job just ends)."""
        ...


def usage_of(raw: dict[str, Any] | None) -> Usage | None:
    """A `Usage` from either API's usage object."""
    if not raw:
        return None
    prompt = raw.get("prompt_tokens", raw.get("input_tokens", 0)) or 0
    completion = raw.get("completion_tokens", raw.get("output_tokens", 0)) or 0
    return Usage(
        prompt_tokens=prompt,
        completion_tokens=completion,
        total_tokens=raw.get("total_tokens") or prompt + completion,
    )


def add_usage(a: Usage | None, b: Usage | None) -> Usage | None:
    """Usage summed over rounds."""
    if a is None or b is None:
        return a or b
    return Usage(
        prompt_tokens=a.prompt_tokens + b.prompt_tokens,
        completion_tokens=a.completion_tokens + b.completion_tokens,
        total_tokens=a.total_tokens + b.total_tokens,
    )
