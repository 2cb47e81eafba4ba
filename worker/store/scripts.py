"""The store's Lua scripts, loaded from the ``lua/`` files beside this module.

Each file opens with a header naming every KEYS and ARGV entry. A script never spells a set of statuses
by hand: where it needs to know whether a job is live it is given the live statuses' index keys, listed
by `LIVE_STATUSES`, which is derived from `JobStatus`. A line ``--#include NAME`` is replaced by the file
``lua/NAME.lua`` (a helper function several scripts share).
"""

from __future__ import annotations

import functools
import re
from importlib.resources import files

from schemas.job import JobStatus

LIVE_STATUSES: tuple[JobStatus, ...] = tuple(s for s in JobStatus if not s.ended)
"""The statuses of a job that has not ended, in the order their index keys are passed to scripts."""


@functools.cache
def source(name: str) -> str:
    """The Lua source of ``lua/<name>.lua``, its includes expanded."""
    text = files("worker.store").joinpath("lua", f"{name}.lua").read_text(encoding="utf-8")
    return re.sub(r"^--#include (\w+)$", lambda m: source(m.group(1)), text, flags=re.M)
