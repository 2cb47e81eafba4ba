"""One typed settings object, read once from the environment (prefix ``AJ_``) and ``.env``."""

from __future__ import annotations

import functools
from typing import Annotated

from pydantic import AliasChoices, Field, SecretStr, ValidationError, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from schemas.requests import RunBackend
from worker import constants as c

PositiveFloat = Annotated[float, Field(gt=0)]
NonNegativeFloat = Annotated[float, Field(ge=0)]
Port = Annotated[int, Field(ge=1, le=65535)]


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
    queue_runs_active: str = Field("runs.active", min_length=1)
    """Work on runs already started (finish, tool outputs, cancel): always served before new starts."""
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
    max_retries: int = Field(10, ge=0, le=100)
    """Retryable API errors in a row tolerated per step before the job fails and is dead-lettered. A 429
    that says how long to wait (Retry-After, or a rate-limit reset) does not count: it is waited out, and
    the job's deadline bounds the wait."""
    outbox_grace: PositiveFloat = c.OUTBOX_GRACE_S
    """Seconds a message staged in the outbox waits for its sender before a worker's poll loop sends it
    (the sender died, or the broker was down when the job was submitted)."""
    stall_after: PositiveFloat = c.STALL_AFTER_S
    """Seconds a job's message may be in flight, with nothing waiting in the broker for its queue, before
    the watchdog re-drives the job."""
    ownerless_after: PositiveFloat = c.OWNERLESS_AFTER_S
    """Seconds a live job must have sat in its status with no owner before the watchdog re-drives it."""
    watchdog_every: PositiveFloat = c.WATCHDOG_EVERY_S
    """Seconds between watchdog passes, which find jobs that stopped moving and re-drive them."""
    max_redrives: int = Field(c.MAX_REDRIVES, ge=0, le=100)
    """Re-drives a stalled job gets before it ends ``failed`` with code ``stalled``."""
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
    # --- clean-up, beat, Flower, metrics ---
    thread_idle_s: PositiveFloat = c.THREAD_IDLE_S
    """Seconds without a job before a thread or conversation this system recorded is deleted."""
    store_idle_s: PositiveFloat = c.STORE_IDLE_S
    """Seconds since a vector store's ``last_active_at`` before a store this system created is deleted."""
    cleanup_deletes_per_s: PositiveFloat = c.CLEANUP_DELETES_PER_S
    """API deletes per second, shared by every sweep on every host (a Redis-held pace)."""
    cleanup_include_unmanaged: bool = False
    """Let the vector-store and file sweeps touch objects this system did not create (threads cannot be
    listed, so only recorded ones are ever seen)."""
    sweep_threads_s: NonNegativeFloat = c.SWEEP_THREADS_S
    """Seconds between scheduled sweeps of threads and conversations; 0 turns the sweep off."""
    sweep_stores_s: NonNegativeFloat = c.SWEEP_STORES_S
    """Seconds between scheduled sweeps of vector stores; 0 turns the sweep off."""
    sweep_files_s: NonNegativeFloat = c.SWEEP_FILES_S
    """Seconds between scheduled sweeps of uploaded files; 0 turns the sweep off."""
    sweep_jobs_s: NonNegativeFloat = c.SWEEP_JOBS_S
    """Seconds between scheduled sweeps of job index entries and old events; 0 turns the sweep off."""
    beat_max_interval: PositiveFloat = c.BEAT_MAX_INTERVAL_S
    """Most seconds a beat sleeps between looks at the schedule; a standby beat retries the lock this often
    and takes over at most five times this long after the active one died."""
    flower_user: str | None = None
    """Flower's basic-auth user; Flower refuses to start without it unless ``AJ_FLOWER_DEV=1``."""
    flower_password: SecretStr | None = None
    """Flower's basic-auth password."""
    flower_dev: bool = False
    """Allow Flower without credentials (a developer's machine only)."""
    flower_address: str = "127.0.0.1"
    flower_port: Port = 5555
    # --- webhooks ---
    webhooks: bool = False
    """OpenAI sends webhooks for background responses to this deployment's receiver (``ajobs webhooks``):
    their polls become a safety net, `webhook_safety_poll` apart."""
    webhook_secret: SecretStr | None = Field(
        None, validation_alias=AliasChoices("AJ_WEBHOOK_SECRET", "OPENAI_WEBHOOK_SECRET")
    )
    """The ``whsec_...`` secret of the webhook endpoint registered with OpenAI (the receiver verifies every
    delivery with it)."""
    webhook_address: str = "127.0.0.1"
    webhook_port: Port = 8780
    webhook_path: str = Field("/webhooks/openai", pattern=r"^/")
    """The route OpenAI delivers to (the receiver's URL is ``http://ADDRESS:PORT`` plus this path)."""
    webhook_safety_poll: PositiveFloat = 30.0
    """Seconds between the safety-net polls of a response a webhook will announce: a lost webhook costs at
    most this much lag, never a stuck job."""
    webhook_tolerance: int = Field(300, ge=1)
    """Oldest a delivery's signed timestamp may be (seconds); older ones are refused as replays."""
    webhook_dedupe_ttl: PositiveFloat = 600.0
    """Seconds a delivery id is remembered, so a duplicate delivery has one effect."""
    queued_stuck_after: PositiveFloat = 600.0
    """Seconds a background response may stay ``queued`` before it is cancelled and created again (once)."""
    metrics_address: str = "127.0.0.1"
    metrics_port: Port = c.METRICS_PORT
    """Port of the Prometheus exporter (``ajobs metrics``)."""

    @model_validator(mode="after")
    def _limits_fit(self) -> Settings:
        if self.task_time_limit >= self.visibility_timeout:
            raise ValueError(
                "AJ_TASK_TIME_LIMIT must be below AJ_VISIBILITY_TIMEOUT, or a running task is delivered twice"
            )
        if self.task_soft_time_limit >= self.task_time_limit:
            raise ValueError("AJ_TASK_SOFT_TIME_LIMIT must be below AJ_TASK_TIME_LIMIT")
        if self.flower_user is not None and ":" in self.flower_user:
            raise ValueError("AJ_FLOWER_USER must not contain a colon (basic auth splits on it)")
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
