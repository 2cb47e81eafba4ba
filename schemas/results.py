"""Typed views of what each job kind leaves in its record: `RunResult`, `IndexResult`, `CleanupResult`.

The record keeps its result as the JSON the worker wrote (``JobRecord.result``, unchanged in Redis, so
readers in other languages see the same thing); these models read it, with the record's usage and remote
ids where the result lives there. Reach them through the record: ``record.typed_result()`` (the model of
the job's kind) or ``record.run_result()``, ``record.index_result()``, ``record.cleanup_result()``.

They ignore fields they do not know, so a record written by a newer worker still reads.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from schemas.job import Usage

_READ = ConfigDict(extra="ignore")


class Annotation(BaseModel):
    """A citation or file path in a run's text, in the same shape for both backends."""

    model_config = _READ

    type: str | None = None
    """``file_citation``, ``file_path``, ``container_file_citation``..."""
    file_id: str | None = None
    index: int | None = None
    """Where in the text it sits."""


class RunResult(BaseModel):
    """What a run produced."""

    model_config = _READ

    text: str = ""
    """The assistant's text (its messages or output items joined by blank lines)."""
    annotations: list[Annotation] = Field(default_factory=list)
    file_ids: list[str] = Field(default_factory=list)
    """Files the run produced (images, container files)."""
    usage: Usage | None = None
    tool_rounds: int = 0
    """How many times the run stopped for tool outputs and went on with them."""
    incomplete_details: dict[str, Any] | None = None
    """Why the run ended incomplete (a failed job), as the API said."""

    def summary(self) -> str:
        """One line: the start of the text, the tokens and the tool rounds."""
        text = " ".join(self.text.split())
        shown = text if len(text) <= 60 else text[:59] + "…"
        parts = [repr(shown) if shown else "no text"]
        if self.usage:
            parts.append(f"{self.usage.prompt_tokens} in / {self.usage.completion_tokens} out tokens")
        if self.tool_rounds:
            parts.append(f"{self.tool_rounds} tool round{'s' if self.tool_rounds != 1 else ''}")
        return ", ".join(parts)


class FileCounts(BaseModel):
    """A vector store's or a batch's files by state."""

    model_config = _READ

    completed: int = 0
    failed: int = 0
    in_progress: int = 0
    cancelled: int = 0
    total: int = 0


class FileError(BaseModel):
    """Why a file failed to index, as the API said."""

    model_config = _READ

    code: str | None = None
    message: str | None = None


class IndexedFile(BaseModel):
    """A file of an indexing job: its id, and the local path it was uploaded from when there was one."""

    model_config = _READ

    file_id: str
    path: str | None = None


class FailedFile(IndexedFile):
    """A file that failed to index, with the API's last error."""

    last_error: FileError | None = None


class SkippedPath(BaseModel):
    """A path the worker skipped (the request asked for ``skip_bad_paths``), with why."""

    model_config = _READ

    path: str
    problem: str


class Batch(BaseModel):
    """One file batch of the job."""

    model_config = _READ

    id: str
    round: int = 0
    status: str | None = None
    file_counts: FileCounts | None = None


class IndexResult(BaseModel):
    """What an indexing job did."""

    model_config = _READ

    vector_store_id: str | None = None
    file_counts: FileCounts = Field(default_factory=FileCounts)
    """The store's files by state when the job ended."""
    failed: list[FailedFile] = Field(default_factory=list)
    """Files that still failed after every retry round, each with its error."""
    recovered: list[IndexedFile] = Field(default_factory=list)
    """Files that failed at first and indexed in a retry round."""
    uploaded: int = 0
    """Files uploaded for the job (by the worker, or by the producer in upload mode)."""
    skipped_paths: list[SkippedPath] = Field(default_factory=list)
    batches: list[Batch] = Field(default_factory=list)
    cancelled_batches: list[str] = Field(default_factory=list)
    partial: bool = False
    """Some files did not index (failed, or the job was cancelled or timed out)."""

    def summary(self) -> str:
        """One line: the store, the files completed and failed."""
        counts = self.file_counts
        line = (
            f"{self.vector_store_id or 'no store'}: {counts.completed} completed, {len(self.failed)} failed"
        )
        if self.skipped_paths:
            line += f", {len(self.skipped_paths)} paths skipped"
        return line


class CleanupError(BaseModel):
    """A target whose listing failed."""

    model_config = _READ

    code: str
    message: str


class TargetCounts(BaseModel):
    """What a clean-up did (or, dry, would do) to one target."""

    model_config = _READ

    candidates: int = 0
    deleted: int = 0
    already_gone: int = 0
    failed: int = 0
    skipped: dict[str, int] = Field(default_factory=dict)
    """Skipped objects by reason (``active job``, ``not created here``, ``too new``...)."""
    skipped_ids: dict[str, list[str]] = Field(default_factory=dict)
    would_delete: list[str] = Field(default_factory=list)
    """Dry run: the ids it would delete (up to 1,000)."""
    deleted_ids: list[str] = Field(default_factory=list)
    errors: list[dict[str, Any]] = Field(default_factory=list)
    """Deletes that failed, each with its id and error."""
    error: CleanupError | None = None
    """The target could not be listed at all."""


class CleanupResult(BaseModel):
    """What a clean-up job did, per target and in total."""

    model_config = _READ

    dry_run: bool = False
    targets: dict[str, TargetCounts] = Field(default_factory=dict)
    deleted: int = 0
    skipped: int = 0
    failed: int = 0

    def summary(self) -> str:
        """One line: the totals, and which targets, dry or not."""
        verb = "would delete" if self.dry_run else "deleted"
        count = sum(t.candidates for t in self.targets.values()) if self.dry_run else self.deleted
        return (
            f"{verb} {count}, skipped {self.skipped}, failed {self.failed} "
            f"({', '.join(self.targets) or 'no targets'})"
        )


TypedResult = RunResult | IndexResult | CleanupResult
"""The result model of some job kind."""


def run_result(result: dict[str, Any] | None, usage: Usage | None, remote: dict[str, Any]) -> RunResult:
    """A run's result from its record's ``result``, ``usage`` and ``remote`` (tool rounds live there)."""
    rounds = remote.get("tool_rounds")
    if rounds is None and "rounds" in remote:  # responses: one response per round, the first included
        rounds = int(remote["rounds"]) - 1
    fields: dict[str, Any] = {**(result or {}), "tool_rounds": int(rounds or 0)}
    typed = RunResult.model_validate(fields)
    typed.usage = usage
    return typed
