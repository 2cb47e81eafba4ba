"""The rules a local path of an indexing job must meet, as a pure function (no pydantic, no disk): the
producer and the worker look at the disk (`worker.paths`) and ask `path_problem`."""

import os

from schemas.limits import FILE_SEARCH_EXTENSIONS, FILE_SIZE_MAX


def path_problem(path: str, size: int | None, readable: bool, exists: bool) -> str | None:
    """Why `path` cannot be indexed, as a short human message, or None when it can.

    Pure: the caller looks at the file system and passes what it found (`size` None when unknown).
    """
    if not exists:
        return "missing"
    if not readable:
        return "not readable"
    extension = os.path.splitext(path)[1].lower()
    if extension not in FILE_SEARCH_EXTENSIONS:
        accepted = " ".join(sorted(FILE_SEARCH_EXTENSIONS))
        found = f"unsupported extension {extension}" if extension else "no file extension"
        return f"{found} (file_search accepts: {accepted})"
    if size is not None and size > FILE_SIZE_MAX:
        return f"larger than {FILE_SIZE_MAX // (1024 * 1024)} MiB"
    if size == 0:
        # The Files API refuses empty uploads, so say so before uploading.
        return "empty"
    return None
