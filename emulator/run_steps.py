"""Run steps, rendered from the run's state: one tool_calls step per function round, then message_creation."""

from __future__ import annotations

from typing import Any

from emulator.run_model import Run, ToolCall

_STEP_STATUS = {"cancelled": "cancelled", "failed": "failed", "expired": "expired"}


def _base(run: Run, index: int, kind: str, created: float) -> dict[str, Any]:
    return {
        "id": f"step_{run.id.removeprefix('run_')}{index:02d}",
        "object": "thread.run.step",
        "created_at": int(created),
        "assistant_id": run.assistant_id,
        "thread_id": run.thread_id,
        "run_id": run.id,
        "type": kind,
        "last_error": None,
        "expired_at": None,
        "cancelled_at": None,
        "failed_at": None,
        "completed_at": None,
        "metadata": {},
        "usage": None,
    }


def _call_step(run: Run, index: int, call: ToolCall) -> dict[str, Any]:
    step = _base(run, index, "tool_calls", call.created)
    if call.output is not None:
        step["status"] = "completed"
        step["completed_at"] = int(call.created)
    else:
        step["status"] = _STEP_STATUS.get(run.status, "in_progress")
        if step["status"] != "in_progress" and run.ended is not None:
            step[f"{step['status']}_at"] = int(run.ended)
    function = {"name": call.name, "arguments": call.arguments, "output": call.output}
    step["step_details"] = {
        "type": "tool_calls",
        "tool_calls": [{"id": call.id, "type": "function", "function": function}],
    }
    return step


def render_steps(run: Run) -> list[dict[str, Any]]:
    """The run's steps, oldest first."""
    steps = [_call_step(run, index, call) for index, call in enumerate(run.calls)]
    if run.message_id is not None and run.ended is not None:
        step = _base(run, len(steps), "message_creation", run.ended)
        step["status"] = "completed"
        step["completed_at"] = int(run.ended)
        step["usage"] = run.usage
        step["step_details"] = {
            "type": "message_creation",
            "message_creation": {"message_id": run.message_id},
        }
        steps.append(step)
    return steps
