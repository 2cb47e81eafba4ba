"""Upload mode: the producer uploads an indexing job's files itself and submits their file ids, so the
workers need no file system shared with it (``Jobs.submit(request, upload=True)``, ``ajobs submit index
--upload``). It needs the OpenAI API key where the producer runs.

Each upload is recorded the moment it returns, under the job id chosen before the first upload
(`worker.store.uploads`: ``path -> file id``, and the file in the clean-up inventory), so no file is ever
unknown to the system: if the submit then fails, the files are deleted at once, and any delete that fails
leaves its file in the inventory for the files sweep. Uploads run with bounded concurrency
(`Settings.upload_concurrency`), reporting progress after each one.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from typing import TYPE_CHECKING, Any, Final, Literal

from worker.settings import ConfigurationError, Settings

if TYPE_CHECKING:
    import openai

log = logging.getLogger(__name__)

UploadProgress = Callable[[int, int, str], None]
"""Called after each upload with (files uploaded so far, files in all, the path just uploaded)."""
Record = Callable[[dict[str, str]], None]
"""Records ``{path: file id}`` of one upload (blocking)."""
ARecord = Callable[[dict[str, str]], Awaitable[None]]
"""Records ``{path: file id}`` of one upload (awaited)."""

PURPOSE: Final[Literal["assistants"]] = "assistants"
"""The Files API purpose of files for file_search."""


class UploadFailed(RuntimeError):
    """An upload of upload mode failed; nothing was submitted (what was uploaded is said)."""


def _key(settings: Settings) -> str:
    if settings.openai_api_key is None or not settings.openai_api_key.get_secret_value():
        raise ConfigurationError(
            "uploading from the producer (upload mode) needs OPENAI_API_KEY where the producer runs; "
            "set it, or submit the paths for the workers to upload"
        )
    return settings.openai_api_key.get_secret_value()


def openai_client(settings: Settings) -> openai.OpenAI:
    """A client for the producer's uploads (the SDK's own retries on: a producer has no schedule)."""
    import openai

    return openai.OpenAI(
        api_key=_key(settings), base_url=settings.openai_base_url, timeout=settings.openai_timeout
    )


def async_openai_client(settings: Settings) -> openai.AsyncOpenAI:
    """`openai_client` for asyncio."""
    import openai

    return openai.AsyncOpenAI(
        api_key=_key(settings), base_url=settings.openai_base_url, timeout=settings.openai_timeout
    )


def upload_paths(
    client: openai.OpenAI,
    paths: Sequence[str],
    concurrency: int,
    record: Record,
    progress: UploadProgress | None = None,
) -> dict[str, str]:
    """Upload ``paths`` (at most ``concurrency`` at once), recording each as it returns; ``{path: file
    id}``. The first failure stops the rest and raises `UploadFailed`, with what was uploaded recorded."""
    uploaded: dict[str, str] = {}

    def one(path: str) -> None:
        with open(path, "rb") as handle:
            file = client.files.create(file=(os.path.basename(path), handle), purpose=PURPOSE)
        record({path: file.id})
        uploaded[path] = file.id
        if progress is not None:
            progress(len(uploaded), len(paths), path)

    with ThreadPoolExecutor(concurrency, thread_name_prefix="aj-producer-upload") as pool:
        futures = {pool.submit(one, path): path for path in paths}
        done, pending = wait(futures, return_when=FIRST_EXCEPTION)
        failed = next((f for f in done if f.exception() is not None), None)
        if failed is not None:
            for future in pending:
                future.cancel()
            wait(pending)
            raise UploadFailed(f"uploading {futures[failed]} failed: {failed.exception()}") from (
                failed.exception()
            )
    return uploaded


async def aupload_paths(
    client: openai.AsyncOpenAI,
    paths: Sequence[str],
    concurrency: int,
    record: ARecord,
    progress: UploadProgress | None = None,
) -> dict[str, str]:
    """`upload_paths` for asyncio: the files are read in a thread, so the loop never waits on the disk."""
    uploaded: dict[str, str] = {}
    gate = asyncio.Semaphore(concurrency)

    async def one(path: str) -> None:
        async with gate:
            content = await asyncio.to_thread(_read, path)
            file = await client.files.create(file=(os.path.basename(path), content), purpose=PURPOSE)
            await record({path: file.id})
            uploaded[path] = file.id
            if progress is not None:
                progress(len(uploaded), len(paths), path)

    tasks = {asyncio.ensure_future(one(path)): path for path in paths}
    try:
        await asyncio.gather(*tasks)
    except Exception as exc:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        failed = next((p for t, p in tasks.items() if t.done() and not t.cancelled() and t.exception()), "")
        raise UploadFailed(f"uploading {failed} failed: {exc}") from exc
    return uploaded


def _read(path: str) -> bytes:
    with open(path, "rb") as handle:
        return handle.read()


def delete_files(client: openai.OpenAI, file_ids: Sequence[str]) -> list[str]:
    """Delete files uploaded for a submit that failed; the ids deleted (a 404 counts as deleted). The
    others stay in the inventory, for the files sweep."""
    import openai

    deleted = []
    for file_id in file_ids:
        try:
            client.files.delete(file_id)
        except openai.NotFoundError:
            pass
        except openai.OpenAIError as exc:
            log.warning("could not delete file %s (%s); the files sweep will", file_id, exc)
            continue
        deleted.append(file_id)
    return deleted


async def adelete_files(client: openai.AsyncOpenAI, file_ids: Sequence[str]) -> list[str]:
    """`delete_files` for asyncio."""
    import openai

    async def one(file_id: str) -> str | None:
        try:
            await client.files.delete(file_id)
        except openai.NotFoundError:
            return file_id
        except openai.OpenAIError as exc:
            log.warning("could not delete file %s (%s); the files sweep will", file_id, exc)
            return None
        return file_id

    return [f for f in await asyncio.gather(*(one(f) for f in file_ids)) if f is not None]


def with_file_ids(
    request_json: dict[str, Any], uploaded: dict[str, str], paths: Sequence[str]
) -> dict[str, Any]:
    """The request to submit once ``paths`` are uploaded: their file ids (in path order) after those it
    named, and no paths."""
    given = [str(f) for f in request_json.get("file_ids") or []]
    ids = list(dict.fromkeys([*given, *(uploaded[p] for p in paths)]))
    return {
        **{k: v for k, v in request_json.items() if k not in ("paths", "skip_bad_paths")},
        "file_ids": ids,
    }
