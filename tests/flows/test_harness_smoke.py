"""The harness itself: a run job goes from submit to its end in this process, exactly."""

from __future__ import annotations

import pytest
from harness import Harness

from schemas.job import JobStatus


@pytest.mark.parametrize("backend", ["responses"])
def test_a_background_response_completes_in_process(harness: Harness, backend: str) -> None:
    record = harness.submit_and_run(
        {
            "kind": "run",
            "backend": backend,
            "model": "gpt-4o",
            "messages": [{"role": "user", "content": "Hi"}],
        }
    )
    assert record.status == JobStatus.COMPLETED, record.error
    assert record.result and record.result["text"]
    assert harness.worker.ran[0] == "aj.run.start"
