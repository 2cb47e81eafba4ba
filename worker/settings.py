"""One typed settings object, read once from the environment (prefix ``AJ_``) and ``.env``.

A bad value stops start-up with `ConfigurationError`, whose message (`describe`) names each variable
and what it accepts, and never holds a secret: not the value of a ``SecretStr`` setting (the API key,
the Flower password, the webhook secret), not the input of a cross-field rule, and no URL's password.
"""

from __future__ import annotations

import base64
import binascii
import functools
import json
import os
import re
from collections.abc import Sequence
from typing import Annotated, Any, Literal, get_args
from urllib.parse import urlsplit

from pydantic import (
    AliasChoices,
    BeforeValidator,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict, SettingsError

from schemas.backends import RunBackend
from schemas.job import JobKind
from worker import constants as c

PositiveFloat = Annotated[float, Field(gt=0)]
NonNegativeFloat = Annotated[float, Field(ge=0)]
Port = Annotated[int, Field(ge=1, le=65535)]


REDIS_SCHEMES = ("redis://", "rediss://", "unix://", "sentinel://")
"""The URL forms of a Redis: a server (plain, TLS, a socket) or a Sentinel group."""
AMQP_SCHEMES = ("amqp://", "amqps://", "pyamqp://")
"""The URL forms of a RabbitMQ broker."""

LIST_FORMAT = "list_format"
"""The error type of a list setting that is neither a JSON list nor comma-separated (its value is never
shown: a mangled list may hold anything)."""


def _comma_or_json_list(value: object) -> object:
    # A list setting reads a JSON list ('["a.b", "c.d"]') or comma-separated names (a.b,c.d).
    if not isinstance(value, str):
        return value
    text = value.strip()
    if text.startswith("["):
        try:
            return json.loads(text)
        except ValueError:
            raise PydanticCustomError(
                LIST_FORMAT,
                'must be a JSON list (e.g. \'["a.b", "c.d"]\') or comma-separated names (e.g. a.b,c.d)',
            ) from None
    return [part.strip() for part in text.split(",") if part.strip()]


CommaList = Annotated[list[str], NoDecode, BeforeValidator(_comma_or_json_list)]
"""A list of names from the environment: comma-separated, or a JSON list."""

# Whitespace and control characters: what an HTTP header value cannot hold.
_HEADER_UNSAFE = re.compile(r"[\s\x00-\x1f\x7f]")


def _no_comma(value: str | None) -> str | None:
    # Flower reads its basic-auth setting as a comma-separated list of user:password pairs.
    if value is not None and "," in value:
        raise PydanticCustomError(
            "basic_auth", "must not contain a comma (Flower splits its credentials on it)"
        )
    return value


class Settings(BaseSettings):
    """Configuration of producers and workers. Each field is ``AJ_<NAME>`` in the environment."""

    # hide_input_in_errors: a ValidationError printed as is (a traceback, a log line) shows no value, since
    # a value may be a key, a password or a URL holding one; `describe` shows those that are safe.
    model_config = SettingsConfigDict(
        env_prefix="AJ_",
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        frozen=True,
        hide_input_in_errors=True,
    )

    redis_url: str = "redis://127.0.0.1:6379/0"
    """Where job records, events, the poll schedule and beat's schedule live: ``redis://``, ``rediss://``
    (TLS), ``unix://``, or a Sentinel group as ``sentinel://[:PASSWORD@]HOST:PORT/DB``, one per sentinel
    joined by ``;`` (kombu's form; the password is the primary's, the group is `redis_sentinel_master`)."""
    broker_url: str | None = None
    """Celery's broker; the Redis URL when unset. A Redis (any form `redis_url` takes, with the same TLS and
    Sentinel settings) or RabbitMQ (``amqp://`` or ``amqps://``: records and events stay in Redis)."""
    redis_sentinel_master: str | None = None
    """The name of the Sentinel group (``sentinel monitor NAME ...``) a ``sentinel://`` URL's sentinels watch;
    required with one."""
    redis_sentinel_password: SecretStr | None = None
    """The sentinels' own password (their ``requirepass``), when they have one; the primary's is the URL's."""
    redis_tls: bool = False
    """Speak TLS to Redis although the URL does not say so: for a ``sentinel://`` URL (to the sentinels and
    the primary alike). A ``rediss://`` URL turns TLS on by itself."""
    redis_tls_ca_file: str | None = None
    """PEM file of the CA certificate(s) the Redis server's certificate must be signed by; the system's
    trust store when unset. Used by every Redis connection: the store, the broker, the poll loop, beat,
    Flower, the exporter, the webhook receiver, producers."""
    redis_tls_cert_file: str | None = None
    """PEM client certificate, for a Redis that asks clients for one (``tls-auth-clients yes``); needs
    `redis_tls_key_file`."""
    redis_tls_key_file: str | None = None
    """The client certificate's private key (PEM)."""
    redis_tls_verify: Literal["required", "optional", "none"] = "required"
    """How the Redis server's certificate is checked: ``required``, signed by the CA and naming the host
    connected to; ``optional``, signed by the CA, whatever name it holds (Sentinel hands out addresses that
    a certificate may not name); ``none``, not at all (encrypted but unauthenticated: a test bench only)."""
    broker_quorum_queues: bool = False
    """With a RabbitMQ broker: declare the four queues as quorum queues (replicated across a RabbitMQ
    cluster, so a node's loss loses no message) instead of classic ones. A queue keeps the type it was
    first declared with: delete it (drained) before switching."""
    result_ttl: int = Field(c.RESULT_TTL_S, gt=0)
    """Seconds an ended job's record and index entries are kept."""
    idempotency_ttl: int = Field(c.IDEMPOTENCY_TTL_S, gt=0)
    """Seconds an idempotency key keeps returning the job it was first given to."""
    events_maxlen: int = Field(c.EVENTS_MAXLEN, ge=1000)
    """Approximate cap on the event stream's length (older events are trimmed)."""
    queue_runs_active: str = Field("runs.active", min_length=1)
    """Work on runs already started (finish, tool outputs, cancel): always served before new starts."""
    queue_runs: str = Field("runs", min_length=1)
    """New run jobs' starts."""
    queue_indexing: str = Field("indexing", min_length=1)
    """Indexing jobs' steps."""
    queue_maintenance: str = Field("maintenance", min_length=1)
    """Clean-up jobs and beat's sweeps."""
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
    """Seconds a poll loop holds a claimed poll; one whose worker died falls due again after this."""
    poll_concurrency: int = Field(256, ge=1, le=10_000)
    """Remote retrieves in flight at once per worker."""
    start_concurrency: int = Field(c.START_CONCURRENCY, ge=1, le=1000)
    """Run starts one pool process drives at once: the jobs of a start message are started in groups of
    this many, their API creates in flight together and their Redis writes folded into a few round trips
    per group."""
    poll_process: bool = True
    """Run the poll loop in a process of its own beside the worker's main process (one per worker), so its
    retrieves and the Celery consumer handing start messages to the pool do not share one interpreter
    lock; false runs it in a thread of the main process (one process fewer, for small deployments)."""
    poll_kinds: Annotated[list[JobKind], NoDecode, BeforeValidator(_comma_or_json_list)] = Field(
        default_factory=lambda: list(JobKind), min_length=1
    )
    """The job kinds whose schedule entries this worker's poll loop claims (their polls, deferred steps and
    the outbox's sends), comma-separated or a JSON list: ``run`` on workers of the run queues,
    ``index,cleanup`` on those of the indexing and maintenance queues. Every kind must be claimed by some
    running worker."""
    run_backend: RunBackend = RunBackend.RESPONSES
    """The run backend of a request that names none: ``responses`` (background responses, the live API);
    ``assistants`` is for servers that still speak the Assistants API, and code written for it."""
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
    require_durable_redis: bool = False
    """Refuse to start a worker on a Redis that persists nothing or may evict keys (otherwise a loud
    warning): see the README's durability contract."""
    visibility_timeout: int = Field(c.VISIBILITY_TIMEOUT_S, ge=5)
    """Seconds before the broker gives an unacknowledged message to another worker (a killed worker's);
    above the task time limit, so a running task is never delivered twice."""
    task_soft_time_limit: int = Field(20, gt=0)
    """Seconds a task may run before it is interrupted (and retried where it stopped)."""
    task_time_limit: int = Field(25, gt=0)
    """Seconds after which a task's process is killed; below the visibility timeout."""
    openai_api_key: SecretStr | None = Field(
        None, validation_alias=AliasChoices("AJ_OPENAI_API_KEY", "OPENAI_API_KEY")
    )
    """The OpenAI API key the workers use (a secret: it never reaches Redis, logs, events or Flower)."""
    openai_base_url: str | None = Field(
        None, validation_alias=AliasChoices("AJ_OPENAI_BASE_URL", "OPENAI_BASE_URL")
    )
    """The API's base URL: OpenAI's when unset, or a compatible server's (the emulator's in tests)."""
    webhook_secret: SecretStr | None = Field(
        None, validation_alias=AliasChoices("AJ_WEBHOOK_SECRET", "OPENAI_WEBHOOK_SECRET")
    )
    """The Standard Webhooks secret OpenAI signs its webhooks with (``whsec_`` and base64, as the dashboard
    shows it), for the webhook receiver to check each delivery's signature; read like the openai package
    reads it."""
    tool_modules: CommaList = Field(default_factory=list)
    """Modules the worker imports at start so their ``@tool`` functions answer tool calls
    (comma-separated, ``AJ_TOOL_MODULES=myapp.tools,myapp.more``, or a JSON list)."""
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
    """Address Flower listens on (a non-loopback one needs credentials)."""
    flower_port: Port = 5555
    """Port Flower listens on."""
    # --- webhooks ---
    webhooks: bool = False
    """OpenAI sends webhooks for background responses to this deployment's receiver (``ajobs webhooks``):
    their polls become a safety net, `webhook_safety_poll` apart."""
    webhook_address: str = "127.0.0.1"
    """Address the webhook receiver (``ajobs webhooks``) listens on."""
    webhook_port: Port = 8780
    """Port the webhook receiver listens on."""
    webhook_path: str = Field("/webhooks/openai", pattern=r"^/")
    """The route OpenAI delivers to (the receiver's URL is ``http://ADDRESS:PORT`` plus this path)."""
    webhook_safety_poll: PositiveFloat = 45.0
    """Seconds between the safety-net polls of a response a webhook will announce: a lost webhook costs at
    most this much lag, never a stuck job. OpenAI retries a delivery it could not make for days, so this
    covers only the truly lost; a response that ends sooner costs no poll at all."""
    webhook_tolerance: int = Field(300, ge=1)
    """Oldest a delivery's signed timestamp may be (seconds); older ones are refused as replays."""
    webhook_dedupe_ttl: PositiveFloat = 600.0
    """Seconds a delivery id is remembered, so a duplicate delivery has one effect."""
    queued_stuck_after: PositiveFloat = 600.0
    """Seconds a background response may stay ``queued`` before it is cancelled and created again (once)."""
    metrics_address: str = "127.0.0.1"
    """Address the Prometheus exporter (``ajobs metrics``) listens on."""
    metrics_port: Port = c.METRICS_PORT
    """Port of the Prometheus exporter (``ajobs metrics``)."""

    @field_validator("redis_url")
    @classmethod
    def _redis_scheme(cls, value: str) -> str:
        if not value.startswith(REDIS_SCHEMES):
            raise PydanticCustomError(
                "url_scheme", "must start with redis://, rediss://, unix:// or sentinel://"
            )
        if value.startswith("sentinel://") and any(
            not part.startswith("sentinel://") or not urlsplit(part).hostname for part in value.split(";")
        ):
            raise PydanticCustomError(
                "sentinel_url", "must list sentinels as sentinel://HOST:PORT/DB, joined by ';'"
            )
        return value

    @field_validator("broker_url")
    @classmethod
    def _broker_scheme(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith((*REDIS_SCHEMES, *AMQP_SCHEMES)):
            raise PydanticCustomError(
                "url_scheme", "must be a Redis URL (as AJ_REDIS_URL takes) or amqp:// / amqps:// (RabbitMQ)"
            )
        return value

    @field_validator("redis_tls_ca_file", "redis_tls_cert_file", "redis_tls_key_file")
    @classmethod
    def _readable_file(cls, value: str | None) -> str | None:
        if value is not None and not os.access(value, os.R_OK):
            raise PydanticCustomError("tls_file", "must name a readable PEM file")
        return value

    @field_validator("openai_api_key")
    @classmethod
    def _key_fits_a_header(cls, value: SecretStr | None) -> SecretStr | None:
        # Sent as "Authorization: Bearer <key>": httpx refuses such a header only at the first request.
        if value is not None and _HEADER_UNSAFE.search(value.get_secret_value()):
            raise PydanticCustomError(
                "header_unsafe", "must not contain whitespace or control characters (it is sent in a header)"
            )
        return value

    @field_validator("flower_user")
    @classmethod
    def _user_fits_basic_auth(cls, value: str | None) -> str | None:
        if value is not None and ":" in value:
            raise PydanticCustomError("basic_auth", "must not contain a colon (basic auth splits on it)")
        return _no_comma(value)

    @field_validator("flower_password")
    @classmethod
    def _password_fits_basic_auth(cls, value: SecretStr | None) -> SecretStr | None:
        _no_comma(value.get_secret_value() if value is not None else None)
        return value

    @field_validator("webhook_secret")
    @classmethod
    def _webhook_secret_decodes(cls, value: SecretStr | None) -> SecretStr | None:
        # The openai package base64-decodes what follows whsec_; a bad secret would fail every delivery.
        secret = value.get_secret_value() if value is not None else ""
        if secret.startswith("whsec_"):
            try:
                base64.b64decode(secret.removeprefix("whsec_"), validate=True)
            except (binascii.Error, ValueError):
                raise PydanticCustomError(
                    "webhook_secret", "must be whsec_ followed by base64, as OpenAI shows it"
                ) from None
        return value

    @model_validator(mode="after")
    def _limits_fit(self) -> Settings:
        # Each broken rule is reported at the field it constrains, naming the other, never with the input.
        problems: list[tuple[str, str]] = []
        if self.task_time_limit >= self.visibility_timeout:
            problems.append(
                (
                    "task_time_limit",
                    f"must be below AJ_VISIBILITY_TIMEOUT ({self.visibility_timeout}), "
                    "or a running task is delivered twice",
                )
            )
        if self.task_soft_time_limit >= self.task_time_limit:
            problems.append(
                ("task_soft_time_limit", f"must be below AJ_TASK_TIME_LIMIT ({self.task_time_limit})")
            )
        problems.extend(self._redis_problems())
        if problems:
            raise ValidationError.from_exception_data(
                type(self).__name__,
                [
                    InitErrorDetails(
                        type=PydanticCustomError("conflict", message),
                        loc=(field,),
                        input=getattr(self, field),
                    )
                    for field, message in problems
                ],
            )
        return self

    def _redis_problems(self) -> list[tuple[str, str]]:
        problems: list[tuple[str, str]] = []
        sentinel = any(u.startswith("sentinel://") for u in (self.redis_url, self.broker))
        if sentinel and not self.redis_sentinel_master:
            problems.append(("redis_sentinel_master", "must be set with a sentinel:// URL"))
        if bool(self.redis_tls_cert_file) != bool(self.redis_tls_key_file):
            field = "redis_tls_key_file" if self.redis_tls_cert_file else "redis_tls_cert_file"
            problems.append((field, "must be set with the other of AJ_REDIS_TLS_CERT_FILE / _KEY_FILE"))
        return problems

    @property
    def broker(self) -> str:
        """The broker URL in force."""
        return self.broker_url or self.redis_url

    @property
    def broker_is_redis(self) -> bool:
        """Whether the broker is a Redis (or a Sentinel group), rather than RabbitMQ."""
        return self.broker.startswith(REDIS_SCHEMES)


class ConfigurationError(SystemExit):
    """Start-up stops: a setting has a value it does not accept."""


def mask_url_password(value: str) -> str:
    """``value`` with the password of the URL it holds replaced by ``****`` (``redis://:****@host:6379/0``).

    The user-info runs to the value's last ``@``, so a password holding an unescaped ``@``, quote or space
    is masked whole; a user-info without a colon may itself be a token, so all of it is masked then.
    """
    scheme, separator, rest = value.partition("://")
    userinfo, at, host = rest.rpartition("@")
    if not separator or not at:
        return value
    user, colon, _ = userinfo.partition(":")
    return f"{scheme}://{user}:****@{host}" if colon else f"{scheme}://****@{host}"


# A URL's user-info inside free text: up to the last @ before whitespace.
_URL_USERINFO = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)(?P<userinfo>\S*)@")


def mask_url_passwords(text: str) -> str:
    """``text`` with the password of every URL in it masked (see `mask_url_password`).

    The second line of defence, over a whole message: a value `describe` shows is masked whole first.
    """
    return _URL_USERINFO.sub(lambda found: mask_url_password(found[0]), text)


def _is_secret(annotation: Any) -> bool:
    return annotation is SecretStr or SecretStr in get_args(annotation)


# Settings whose input is never shown, derived from their type so a new secret is covered without a list.
SECRET_FIELDS = frozenset(
    name for name, field in Settings.model_fields.items() if _is_secret(field.annotation)
)


def variable_names(field: str) -> str:
    """The environment variable(s) a setting is read from, as a person should read them."""
    info = Settings.model_fields.get(field)
    alias = info.validation_alias if info else None
    if isinstance(alias, AliasChoices):
        first, *others = [str(choice) for choice in alias.choices]
        return f"{first} (or {', '.join(others)})" if others else first
    return f"AJ_{field.upper()}"


def _field_of(head: str | int) -> str | None:
    """The setting a loc starts with: a field name, or one of the aliases it is read under."""
    for name, info in Settings.model_fields.items():
        alias = info.validation_alias
        if head == name or (isinstance(alias, AliasChoices) and head in alias.choices):
            return name
    return None


def _describe_one(loc: Sequence[str | int], message: str, value: Any, hidden: bool = False) -> str:
    field = _field_of(loc[0]) if loc else None
    if field is None:
        # Not one setting (a rule over the whole model): its input is every value read, secrets included.
        return f"  settings: {message}"
    name = variable_names(field) + "".join(f"[{part}]" for part in loc[1:])
    if hidden:
        shown = ""
    elif field in SECRET_FIELDS:
        shown = " (value hidden: a secret)"
    else:
        shown = f" (got {mask_url_password(value) if isinstance(value, str) else value!r})"
    return f"  {name}: {message}{shown}"


def describe(error: ValidationError) -> str:
    """Name each bad variable and what it accepts, for a person reading a start-up failure.

    Shows what was given, except for a secret setting or a whole-model rule, and masks URL passwords.
    """
    lines = ["bad configuration:"]
    for item in error.errors(include_url=False):
        message = item["msg"].removeprefix("Value error, ")
        lines.append(_describe_one(item["loc"], message, item.get("input"), item["type"] == LIST_FORMAT))
    return mask_url_passwords("\n".join(lines))


def _describe_parse_error(error: SettingsError) -> str:
    # pydantic-settings names the field (never the value) when a list or dict setting is not JSON.
    found = re.search(r'field "(\w+)"', str(error))
    if found is None:
        return mask_url_passwords(f"bad configuration: {error}")
    return f'bad configuration:\n  {variable_names(found[1])}: must be JSON (e.g. \'["a", "b"]\')'


@functools.cache
def get_settings() -> Settings:
    """The settings, read once per process; a bad value stops start-up naming the variable."""
    try:
        return Settings()
    except ValidationError as exc:
        raise ConfigurationError(describe(exc)) from None
    except SettingsError as exc:
        raise ConfigurationError(_describe_parse_error(exc)) from None
