"""How jobs read in a terminal: a record as labelled lines, a list as a table whose ids are never cut,
human times and durations, and validation errors one line per field without the field named twice.

Plain text (no rich): a read command imports nothing it does not print, and output piped into another
program is never wrapped or cut; only on a terminal is the last column of a table shortened to fit.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from schemas.job import JobRecord

Row = tuple[str, str]
"""A label and its value."""


# --- times -------------------------------------------------------------------------------------
def duration(seconds: float) -> str:
    """``850 ms``, ``12.3 s``, ``4 min 05 s``, ``2 h 03 min``, ``3 d 4 h``."""
    s = max(seconds, 0.0)
    if s < 1:
        return f"{s * 1000:.0f} ms"
    if s < 60:
        return f"{s:.1f} s"
    if s < 3600:
        return f"{int(s // 60)} min {int(s % 60):02d} s"
    if s < 86400:
        return f"{int(s // 3600)} h {int(s % 3600 // 60):02d} min"
    return f"{int(s // 86400)} d {int(s % 86400 // 3600)} h"


def ago(at: float, now: float | None = None) -> str:
    """How long ago ``at`` was: ``just now``, ``42 s ago``, ``5 min ago``, ``3 h ago``, ``2 d ago``
    (``in 5 min`` for a time ahead)."""
    delta = (time.time() if now is None else now) - at
    if abs(delta) < 1:
        return "just now"
    span = abs(delta)
    if span < 60:
        text = f"{span:.0f} s"
    elif span < 3600:
        text = f"{span // 60:.0f} min"
    elif span < 86400:
        text = f"{span // 3600:.0f} h"
    else:
        text = f"{span // 86400:.0f} d"
    return f"{text} ago" if delta > 0 else f"in {text}"


def stamp(at: float) -> str:
    """A local time: ``2026-05-09 14:03:07``."""
    return datetime.fromtimestamp(at).strftime("%Y-%m-%d %H:%M:%S")


def when(at: float, now: float | None = None) -> str:
    """A local time with how long ago: ``2026-05-09 14:03:07 (5 min ago)``."""
    return f"{stamp(at)} ({ago(at, now)})"


# --- one record ----------------------------------------------------------------------------------
def record_rows(record: JobRecord, now: float | None = None) -> list[Row]:
    """What ``ajobs status`` shows: status, kind, backend, attempts, error, result, remote ids, times."""
    now = time.time() if now is None else now
    rows: list[Row] = [("id", record.id), ("status", _status(record)), ("kind", record.kind.value)]
    backend = record.request.get("backend")
    if backend:
        rows.append(("backend", str(backend)))
    rows.append(("attempts", _attempts(record)))
    if record.error:
        rows.append(("error", f"{record.error.code}: {record.error.message}"))
    summary = result_summary(record)
    if summary:
        rows.append(("result", summary))
    if record.progress:
        p = record.progress
        rows.append(
            ("progress", f"{p.completed}/{p.total} done, {p.failed} failed, {p.in_progress} in progress")
        )
    for call in record.tool_calls:
        rows.append(("tool call", f"{call.id} {call.name}({call.arguments})"))
    rows += [(key, _remote(value)) for key, value in record.remote.items() if _is_remote_id(key, value)]
    rows += time_rows(record, now)
    return rows


def _status(record: JobRecord) -> str:
    if record.cancel_requested and not record.status.ended:
        return f"{record.status.value} (cancel requested)"
    return record.status.value


def _attempts(record: JobRecord) -> str:
    text = str(record.attempts)
    extra = [f"{n} {what}" for n, what in ((record.retries, "retries"), (record.redrives, "re-drives")) if n]
    return f"{text} ({', '.join(extra)})" if extra else text


def _is_remote_id(key: str, value: Any) -> bool:
    # Remote ids (thread_id, run_id, response_id, vector_store_id...) and the batches; not the flow's
    # own bookkeeping (checked, prepared, rounds...).
    return key.endswith("_id") or key == "batches"


def _remote(value: Any) -> str:
    if isinstance(value, list):
        ids = [str(item.get("id")) if isinstance(item, dict) else str(item) for item in value]
        return ", ".join(ids)
    return str(value)


def time_rows(record: JobRecord, now: float) -> list[Row]:
    """Submitted, waited, ran, took: when the job was submitted and how long each part lasted."""
    rows: list[Row] = [("submitted", when(record.created_at, now))]
    started, finished = record.started_at, record.finished_at
    if started is not None:
        rows.append(("queued for", duration(started - record.created_at)))
        rows.append(("ran for" if finished else "running for", duration((finished or now) - started)))
    if finished is not None:
        rows.append(("took", f"{duration(finished - record.created_at)}, ended {ago(finished, now)}"))
    elif record.deadline_at is not None:
        rows.append(("deadline", when(record.deadline_at, now)))
    return rows


def result_summary(record: JobRecord) -> str:
    """One line about the job's result (its kind's `summary`), or empty when there is none."""
    if record.result is None:
        return ""
    typed = record.typed_result()
    return typed.summary() if typed is not None else ""


def render_rows(rows: Sequence[Row]) -> str:
    """Labelled lines, the values aligned."""
    width = max((len(label) for label, _ in rows), default=0)
    return "\n".join(f"{label:<{width}}  {value}" for label, value in rows)


# --- many records ----------------------------------------------------------------------------------
def job_table(records: Sequence[JobRecord], width: int | None, now: float | None = None) -> str:
    """A table of jobs: id (always whole), kind, status, updated, and the error code or the result.

    ``width``: the terminal's columns, to shorten the last column to; None when piped (nothing cut).
    """
    now = time.time() if now is None else now
    header = ("ID", "KIND", "STATUS", "UPDATED", "ERROR / RESULT")
    rows = [header] + [
        (
            r.id,
            r.kind.value,
            r.status.value,
            ago(r.updated_at, now),
            r.error.code if r.error else (result_summary(r) if r.status.ended else ""),
        )
        for r in records
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(header) - 1)]
    lines = []
    for row in rows:
        fixed = "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=False))
        last = row[-1]
        if width is not None:
            room = width - len(fixed) - 2
            last = last if len(last) <= room else (last[: max(room - 1, 0)] + "…" if room > 1 else "")
        lines.append(f"{fixed}  {last}".rstrip())
    return "\n".join(lines)


# --- validation errors ----------------------------------------------------------------------------
_KINDS = ("run", "index", "cleanup")


def validation_lines(errors: Sequence[Any]) -> list[str]:
    """One line per error of a `pydantic.ValidationError` (``errors()``): where, and what is wrong, with
    the field named once (``assistant_id: required``, not ``assistant_id: assistant_id: required``)."""
    lines = []
    for error in errors:
        loc = [str(part) for part in error.get("loc", ())]
        if len(loc) > 1 and loc[0] in _KINDS:  # the request's kind, from the tagged union
            loc = loc[1:]
        where = _dotted(loc) or "request"
        message = str(error.get("msg", "")).removeprefix("Value error, ")
        for name in {where, loc[-1] if loc else "", *(_dotted(loc[:i]) for i in range(1, len(loc)))}:
            if name and message.startswith(f"{name}: "):
                message = message[len(name) + 2 :]
                break
        lines.append(f"{where}: {message}")
    return lines


def _dotted(loc: Sequence[str]) -> str:
    text = ""
    for part in loc:
        text += f"[{part}]" if part.isdigit() else (f".{part}" if text else part)
    return text
