"""Local paths an indexing job names: checked where the files are, and made absolute before submit.

The rules (exists, readable, a regular file, a type file_search takes, not empty, not too big) are
`schemas.index.path_problem`'s; `check_path` looks at the disk for them. Workers run the same check when a
job starts; a producer runs it before it submits (`resolve_paths`), so a bad path is refused at once,
named, instead of failing the job later, and a relative path is made absolute: a worker on another host
(or in another directory) could never resolve it against the producer's working directory.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from schemas.paths import path_problem


class BadPaths(ValueError):
    """Paths that cannot be indexed, each named with why; nothing was submitted or uploaded."""

    def __init__(self, problems: Sequence[tuple[str, str]]):
        self.problems = list(problems)
        listed = "; ".join(f"{path}: {why}" for path, why in self.problems)
        count = len(self.problems)
        super().__init__(f"{count} path{'s' if count != 1 else ''} cannot be indexed: {listed}")


def check_path(path: str) -> str | None:
    """Why ``path`` cannot be indexed (missing, unreadable, not a file, bad extension, too big), or None."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return path_problem(path, None, readable=False, exists=False)
    except OSError as exc:
        return f"cannot be read ({exc.strerror or exc})"
    if not os.path.isfile(path):
        return "not a regular file"
    return path_problem(path, st.st_size, readable=os.access(path, os.R_OK), exists=True)


def check_paths(paths: Sequence[str]) -> list[tuple[str, str]]:
    """Every bad path with why, in the order given (empty when all can be uploaded)."""
    problems = ((path, check_path(path)) for path in paths)
    return [(path, why) for path, why in problems if why is not None]


def resolve_paths(paths: Sequence[str], *, check: bool = True, refuse_bad: bool = True) -> list[str]:
    """``paths`` made absolute against this process's working directory (``~`` expanded).

    ``check``: the files are here, so look at each; a bad one raises `BadPaths` (unless not
    ``refuse_bad``: the request skips bad paths, and the worker names them in the result). Without
    ``check`` (the files are only where the workers run) a relative path is refused, since nothing could
    tell what it is relative to.
    """
    if not check:
        relative = [p for p in paths if not os.path.isabs(os.path.expanduser(p))]
        if relative:
            why = "a relative path; give the absolute path the workers see"
            raise BadPaths([(p, why) for p in relative])
        return [os.path.expanduser(p) for p in paths]
    absolute = [os.path.abspath(os.path.expanduser(p)) for p in paths]
    if refuse_bad:
        bad = check_paths(absolute)
        if bad:
            shown = {a: p for p, a in zip(paths, absolute, strict=True)}
            raise BadPaths([(_named(shown[a], a), why) for a, why in bad])
    return absolute


def _named(given: str, absolute: str) -> str:
    return absolute if given == absolute else f"{given} ({absolute})"
