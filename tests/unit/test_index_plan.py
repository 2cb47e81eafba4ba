"""Indexing's pure parts: batch slices, progress that never goes back, store metadata, path checks."""

from __future__ import annotations

from pathlib import Path

from schemas.job import Progress
from tasks.index_poll import batch_progress, merge_progress
from tasks.index_prepare import _store_metadata, plan_batches
from tasks.index_uploads import bad_paths_error
from worker.paths import check_paths


def test_file_ids_are_cut_into_batches_of_at_most_the_batch_size_in_order() -> None:
    ids = [f"file-{i}" for i in range(5000)]
    batches = plan_batches(ids, 2000)
    assert [len(b) for b in batches] == [2000, 2000, 1000]
    assert [i for b in batches for i in b] == ids
    assert plan_batches(["a"], 2000) == [["a"]]


def test_first_round_progress_sums_the_batches_and_counts_cancelled_as_failed() -> None:
    counts = [
        {"completed": 1500, "failed": 10, "in_progress": 490, "cancelled": 0},
        {"completed": 100, "failed": 0, "in_progress": 0, "cancelled": 5},
    ]
    assert batch_progress(counts, 2105, {}) == Progress(
        completed=1600, failed=15, in_progress=490, total=2105
    )


def test_in_a_retry_round_files_stay_failed_until_they_recover() -> None:
    # 90 settled earlier, 10 failed and are being retried: 4 recovered so far, 3 still indexing.
    counts = [{"completed": 4, "failed": 3, "in_progress": 3}]
    progress = batch_progress(counts, 100, {"completed": 90, "failed": 10})
    assert progress == Progress(completed=94, failed=6, in_progress=3, total=100)
    assert progress.completed + progress.failed == 100


def test_progress_never_goes_backwards() -> None:
    old = Progress(completed=50, failed=5, in_progress=45, total=100)
    # A late poll that saw less changes nothing done; fresher in_progress is still taken.
    assert merge_progress(old, Progress(completed=40, failed=2, in_progress=58, total=100)) == Progress(
        completed=50, failed=5, in_progress=58, total=100
    )
    assert merge_progress(old, old) is None
    assert merge_progress(None, old) == old
    # Failed files that recover move from failed to completed: done stays, completed grows.
    assert merge_progress(old, Progress(completed=53, failed=2, total=100)) == Progress(
        completed=53, failed=2, total=100
    )


def test_store_metadata_tags_the_store_as_ours_within_the_16_pair_limit() -> None:
    assert _store_metadata({"team": "search"}, "job_1") == {
        "team": "search",
        "managed_by": "assistant-jobs",
        "aj_job_id": "job_1",
    }
    full = {f"k{i}": "v" for i in range(15)}
    assert _store_metadata(full, "job_1") == {**full, "managed_by": "assistant-jobs"}
    assert len(_store_metadata({f"k{i}": "v" for i in range(16)}, "job_1")) == 16


def test_every_bad_path_is_named_with_why(tmp_path: Path) -> None:
    good = tmp_path / "a.md"
    good.write_text("# a")
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    folder = tmp_path / "folder.txt"
    folder.mkdir()
    program = tmp_path / "x.exe"
    program.write_bytes(b"MZ")
    paths = [str(good), str(tmp_path / "gone.txt"), str(program), str(empty), str(folder)]
    bad = check_paths(paths)
    assert [(p, why.split(" (")[0]) for p, why in bad] == [
        (str(tmp_path / "gone.txt"), "missing"),
        (str(program), "unsupported extension .exe"),
        (str(empty), "empty"),
        (str(folder), "not a regular file"),
    ]
    error = bad_paths_error(bad, len(paths))
    assert error.code == "bad_paths" and not error.retryable
    assert error.message.startswith("4 of 5 paths cannot be indexed, so nothing was uploaded")
    assert all(p in error.message for p, _ in bad)
