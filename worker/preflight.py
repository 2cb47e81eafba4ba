"""What a worker checks before it consumes anything, besides its Redis (`worker.durability`): that it can
call the API at all. A worker without an OpenAI API key would take jobs and fail every one of them at its
first request; it refuses to start instead, naming the variable."""

from __future__ import annotations

from typing import Any

from celery import bootsteps

from worker.settings import ConfigurationError, Settings, get_settings

MISSING_KEY = (
    "OPENAI_API_KEY is not set: a worker calls the OpenAI API for every job, so it refuses to start "
    "without a key (set OPENAI_API_KEY, or AJ_OPENAI_API_KEY; a compatible server needs one too)"
)


def check_api_key(settings: Settings) -> None:
    """Raise `ConfigurationError` naming the variable when no API key is set."""
    key = settings.openai_api_key
    if key is None or not key.get_secret_value():
        raise ConfigurationError(MISSING_KEY)


class ApiKeyCheck(bootsteps.Step):
    """Checks the API key as the worker is built, before any process forks or any message is consumed."""

    label = "API key check"

    def create(self, parent: Any) -> None:
        """Run the check; a `ConfigurationError` here stops the worker."""
        check_api_key(get_settings())
