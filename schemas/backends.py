"""The run backends, in a module of their own: the settings name the default one, and importing every
request model to read that enum would cost each command that only reads a record (``ajobs status``)."""

from enum import StrEnum


class RunBackend(StrEnum):
    """Which OpenAI API carries out a run."""

    ASSISTANTS = "assistants"
    """Assistants API: a run of an assistant on a thread."""
    RESPONSES = "responses"
    """Responses API: a background response, optionally in a conversation."""
