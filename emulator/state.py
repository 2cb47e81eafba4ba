"""The in-memory store: every object the emulator holds, the clock and the seeded RNG."""

from __future__ import annotations

import random
import time
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from emulator.profile import Profile

if TYPE_CHECKING:
    from emulator.response_model import ResponseRecord
    from emulator.run_model import Run
    from emulator.vector_store_model import FileBatch, VectorStore


def new_id(prefix: str) -> str:
    """A fresh object id in the API's style, e.g. `run_3f2a...`."""
    return f"{prefix}{uuid.uuid4().hex[:24]}"


@dataclass(slots=True)
class Thread:
    """A thread: its messages (oldest first), its runs and the run that currently holds it."""

    id: str
    created: float
    metadata: dict[str, str]
    tool_resources: dict[str, Any] | None
    messages: list[dict[str, Any]] = field(default_factory=list)
    runs: list[Run] = field(default_factory=list)
    active_run: Run | None = None


@dataclass(slots=True)
class StoredFile:
    """An uploaded file: its API object and its bytes."""

    obj: dict[str, Any]
    content: bytes


@dataclass(slots=True)
class Conversation:
    """A Responses-API conversation and its items (oldest first)."""

    id: str
    created: float
    metadata: dict[str, str]
    # (item, id of the response that produced it or None): outputs show once that response completes.
    items: list[tuple[dict[str, Any], str | None]] = field(default_factory=list)


class Store:
    """All emulated objects, keyed by id, plus the profile and the RNG that makes them deterministic."""

    def __init__(self, profile: Profile) -> None:
        self.profile = profile
        self.rng = random.Random(profile.seed)
        self.assistants: dict[str, dict[str, Any]] = {}
        self.threads: dict[str, Thread] = {}
        self.messages: dict[str, dict[str, Any]] = {}
        self.runs: dict[str, Run] = {}
        self.files: dict[str, StoredFile] = {}
        self.vector_stores: dict[str, VectorStore] = {}
        self.batches: dict[str, FileBatch] = {}
        self.responses: dict[str, ResponseRecord] = {}
        self.conversations: dict[str, Conversation] = {}

    @staticmethod
    def now() -> float:
        """The emulator's clock (unix seconds, float)."""
        return time.time()

    def set_profile(self, profile: Profile) -> None:
        """Replace the profile; a new seed restarts the RNG so sequences stay reproducible."""
        if profile.seed != self.profile.seed:
            self.rng = random.Random(profile.seed)
        self.profile = profile

    def wipe(self) -> None:
        """Forget every object and restart the RNG from the profile's seed."""
        self.__init__(self.profile)  # type: ignore[misc]
