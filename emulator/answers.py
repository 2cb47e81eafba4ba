"""Deterministic model behaviour shared by runs and responses: which functions to call, the final text, usage.

Two backends given the same question must produce the same text and the same usage numbers, so everything
here is a pure function of the question and the tool outputs.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

import orjson

from emulator.profile import Profile


def called_functions(text: str, function_names: Iterable[str]) -> list[str]:
    """The function names `text` mentions by name, in the order they first appear in it."""
    found: list[tuple[int, str]] = []
    for name in set(function_names):
        match = re.search(rf"(?<![A-Za-z0-9_]){re.escape(name)}(?![A-Za-z0-9_])", text)
        if match:
            found.append((match.start(), name))
    return [name for _, name in sorted(found)]


def function_arguments(text: str) -> str:
    """The JSON arguments string the emulated model passes to every function."""
    return orjson.dumps({"query": text}).decode()


def final_text(question: str, outputs: Sequence[tuple[str, str]] = ()) -> str:
    """The assistant's final answer: an echo of the question plus every tool output it was given."""
    text = f"Answer to: {question}"
    if outputs:
        text += " " + "; ".join(f"{name} returned: {output}" for name, output in outputs)
    return text


def _tokens(text: str) -> int:
    return len(text.split())


def usage_numbers(profile: Profile, question: str, answer: str) -> tuple[int, int]:
    """(prompt/input tokens, completion/output tokens) for a final answer."""
    return profile.usage.prompt_tokens + _tokens(question), profile.usage.completion_tokens + _tokens(answer)


def citation_marker(index: int = 0) -> str:
    """The marker text a file_search citation annotates, like the API's `【4:0†source】`."""
    return f"【{index}:0†source】"
