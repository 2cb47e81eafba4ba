"""One typed settings object, read once from the environment (prefix ``AJ_``) and ``.env``."""

from __future__ import annotations

import functools
from typing import Annotated

from pydantic import AliasChoices, Field, SecretStr, ValidationError, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from schemas.requests import RunBackend
from worker import constants as c

PositiveFloat = Annotated[float, Field(gt=0)]


class Settings(BaseSettings):
    """Configuration of producers and workers. Each field is ``AJ_<NAME>`` in the environment."""

    model_config = SettingsConfigDict(
        env_prefix="AJ_", env_file=".env", env_file_encoding="utf-8", extra="ignore", frozen=True
    )

    redis_url: str = Field("redis://127.0.0.1:6379/0", pattern=r"^(redis|rediss|unix)://")
    """Where job records, events and the poll schedule live."""
    broker_url: str | None = None
    """Celery's broker; the Redis URL when unset (RabbitMQ works too: ``amqp://...``)."""
    result_ttl: int = Field(c.RESULT_TTL_S, gt=0)
    """Seconds an ended job's record and index entries are kept."""
    idempotency_ttl: int = Field(c.IDEMPOTENCY_TTL_S, gt=0)
    events_maxlen: int = Field(c.EVENTS_MAXLEN, ge=1000)
    queue_runs: str = Field("runs", min_length=1)
    queue_indexing: str = Field("indexing", min_length=1)
    queue_maintenance: str = Field("maintenance", min_length=1)
    default_deadline: PositiveFloat = c.DEFAULT_DEADLINE_S
    """Seconds a job may take when its request gives no deadline."""
    poll_first: PositiveFloat = 1.0
    """Seconds from start to the first poll."""
    poll_factor: float = Field(1.5, ge=1.0, le=10.0)
    """Each further poll waits this much longer than the last..."""
    poll_cap: PositiveFloat = 2.0
    """...but never more than this many seconds."""
    poll_jitter: float = Field(0.2, ge=0.0, le=1.0)
    """Fraction of each delay drawn at random, so polls do not march in step."""
    poll_lease: PositiveFloat = c.POLL_LEASE_S
    poll_concurrency: int = Field(256, ge=1, le=10_000)
    """Remote retrieves in flight at once per worker."""
    run_backend: RunBackend = RunBackend.ASSISTANTS
    max_retries: int = Field(8, ge=0, le=100)
    """Retryable API errors tolerated per step before the job fails and is dead-lettered."""
    visibility_timeout: int = Field(c.VISIBILITY_TIMEOUT_S, ge=5)
    task_soft_time_limit: int = Field(20, gt=0)
    task_time_limit: int = Field(25, gt=0)
    openai_api_key: SecretStr | None = Field(
        None, validation_alias=AliasChoices("AJ_OPENAI_API_KEY", "OPENAI_API_KEY")
    )
    openai_base_url: str | None = Field(
        None, validation_alias=AliasChoices("AJ_OPENAI_BASE_URL", "OPENAI_BASE_URL")
    )
    tool_modules: list[str] = Field(default_factory=list)
    """Modules the worker imports at start so their ``@tool`` functions answer tool calls
    (JSON list, e.g. ``AJ_TOOL_MODULES='["myapp.tools"]'``)."""
    openai_timeout: PositiveFloat = 30.0
    """Seconds before one API request is given up (and retried)."""
    batch_size: int = Field(c.BATCH_SIZE, ge=1, le=c.BATCH_SIZE)
    """File ids per file batch of an indexing job (at most the API's 2,000)."""
    upload_concurrency: int = Field(c.UPLOAD_CONCURRENCY, ge=1, le=64)
    """Uploads in flight at once per indexing task."""

    @model_validator(mode="after")
    def _limits_fit(self) -> Settings:
        if self.task_time_limit >= self.visibility_timeout:
            raise ValueError(
                "AJ_TASK_TIME_LIMIT must be below AJ_VISIBILITY_TIMEOUT, or a running task is delivered twice"
            )
        if self.task_soft_time_limit >= self.task_time_limit:
            raise ValueError("AJ_TASK_SOFT_TIME_LIMIT must be below AJ_TASK_TIME_LIMIT")
        return self

    @property
    def broker(self) -> str:
        """The broker URL in force."""
        return self.broker_url or self.redis_url


class ConfigurationError(SystemExit):
    """Start-up stops: a setting has a value it does not accept."""


def describe(error: ValidationError) -> str:
    """Name each bad variable and what it accepts, for a person reading a start-up failure."""
    lines = ["bad configuration:"]
    for item in error.errors():
        name = "AJ_" + "_".join(str(p) for p in item["loc"]).upper() if item["loc"] else "settings"
        shown = "(hidden)" if "key" in name.lower() else repr(item.get("input"))
        lines.append(f"  {name}: {item['msg']} (got {shown})")
    return "\n".join(lines)


@functools.cache
def get_settings() -> Settings:
    """The settings, read once per process; a bad value stops start-up naming the variable."""
    try:
        return Settings()
    except ValidationError as exc:
        raise ConfigurationError(describe(exc)) from None
