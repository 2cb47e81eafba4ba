"""Errors a person can act on: what went wrong with Redis, the broker or the API, in one line naming the
setting to look at or the fix, and the exit code the CLI ends with (`ExitCode`, documented in the README).

`explain` turns an exception into a `Problem` (None for one it does not know: a bug, shown as such);
`check_redis_url` refuses a Redis URL that cannot mean what was meant, before anything connects.
"""

from __future__ import annotations

import errno
import sys
from dataclasses import dataclass
from enum import IntEnum
from urllib.parse import urlsplit

from worker.settings import ConfigurationError, Settings, mask_url_password


class ExitCode(IntEnum):
    """How ``ajobs`` ends."""

    OK = 0
    """Success (a job waited for ended completed, or is still live without ``--wait``)."""
    JOB_FAILED = 1
    """The job ended badly: failed, cancelled, timed out or expired."""
    USAGE = 2
    """Bad usage or input: an unknown option, a request or setting that does not validate, a bad path,
    a job id that names no job."""
    UNREACHABLE = 3
    """Infrastructure that cannot be used: Redis or the broker unreachable, refused, or refusing the
    credentials; the OpenAI API unreachable or refusing the key (upload mode)."""
    TIMED_OUT = 4
    """``--wait`` ran out of time before the job ended (the job goes on)."""
    INTERRUPTED = 130
    """Ctrl-C (128 + SIGINT)."""


@dataclass(frozen=True)
class Problem:
    """One line for a person, and the exit code that goes with it."""

    message: str
    code: ExitCode


ENCODE_HINT = "percent-encode the password (urllib.parse.quote(password, safe=''))"
"""The fix for a password whose characters break the URL."""


def redis_url_problem(url: str) -> str | None:
    """Why a ``redis://`` or ``rediss://`` URL cannot mean what was meant, or None. Catches the password
    holding a character that ends the host part (``/ ? #``) or looks like a port separator (``:``)."""
    parts = urlsplit(url)
    if parts.scheme not in ("redis", "rediss"):
        return None
    after_host = url[len(parts.scheme) + 3 + len(parts.netloc) :]
    if "@" in after_host:
        return f"an @ after the host part: the password holds a / ? or # character; {ENCODE_HINT}"
    try:
        parts.port  # noqa: B018 (parsing the port is the check)
    except ValueError:
        return f"the port is not a number: a password holding : / ? # or @ breaks the URL; {ENCODE_HINT}"
    if not parts.hostname:
        return "no host (redis://[:password@]host:port/db)"
    return None


def check_redis_url(url: str, variable: str = "AJ_REDIS_URL") -> None:
    """Raise `ConfigurationError` naming ``variable`` when ``url`` cannot mean what was meant."""
    problem = redis_url_problem(url)
    if problem is not None:
        raise ConfigurationError(f"bad configuration: {variable} ({mask_url_password(url)}): {problem}")


def explain(exc: BaseException, settings: Settings | None) -> Problem | None:
    """The `Problem` behind ``exc``, or None when it is not one a person can fix from outside."""
    for found in (_redis(exc, settings), _broker(exc, settings), _openai(exc, settings)):
        if found is not None:
            return found
    if isinstance(exc, ConfigurationError):
        return Problem(str(exc), ExitCode.USAGE)
    return None


def _redis(exc: BaseException, settings: Settings | None) -> Problem | None:
    if "redis" not in sys.modules:
        return None
    import redis

    where = f"Redis at {_url(settings.redis_url if settings else None)} (AJ_REDIS_URL)"
    text = str(exc)
    if isinstance(exc, redis.AuthenticationError) or (
        isinstance(exc, redis.ResponseError) and _auth_refused(text)
    ):
        return Problem(
            f"{where} refused the credentials: check the user and password in AJ_REDIS_URL "
            "(a password with special characters must be percent-encoded)",
            ExitCode.UNREACHABLE,
        )
    if isinstance(exc, redis.ConnectionError | redis.TimeoutError):
        return Problem(f"{where} {_why_unreachable(exc, text)}", ExitCode.UNREACHABLE)
    if isinstance(exc, ValueError) and "Redis URL" in text:
        return Problem(f"bad configuration: AJ_REDIS_URL: {text}", ExitCode.USAGE)
    return None


def _auth_refused(text: str) -> bool:
    markers = (
        "WRONGPASS",
        "NOAUTH",
        "invalid password",
        "without any password configured",
        "invalid username",
    )
    return any(marker.lower() in text.lower() for marker in markers)


def _why_unreachable(exc: BaseException, text: str) -> str:
    lowered = text.lower()
    code = _errno(exc)
    if code == errno.ECONNREFUSED or "connection refused" in lowered:
        return "refused the connection: nothing listens there; start Redis or point AJ_REDIS_URL at it"
    if (
        "name or service not known" in lowered
        or "nodename nor servname" in lowered
        or "resolution" in lowered
    ):
        return "cannot be found: its host name does not resolve; check the host in AJ_REDIS_URL"
    if code in (errno.ENETUNREACH, errno.EHOSTUNREACH) or "unreachable" in lowered or "no route" in lowered:
        return "is unreachable from here (no route to it); check the host in AJ_REDIS_URL and the network"
    if "timeout" in lowered or "timed out" in lowered:
        return "does not answer (timed out); check the host and port in AJ_REDIS_URL and any firewall"
    return f"cannot be reached ({text}); check AJ_REDIS_URL"


def _errno(exc: BaseException) -> int | None:
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, OSError) and seen.errno is not None:
            return seen.errno
        seen = seen.__cause__ or seen.__context__
    return None


def _broker(exc: BaseException, settings: Settings | None) -> Problem | None:
    if "kombu" not in sys.modules:
        return None
    from kombu.exceptions import OperationalError

    if not isinstance(exc, OperationalError):
        return None
    url = _url(settings.broker if settings else None)
    return Problem(
        f"the broker at {url} (AJ_BROKER_URL, or AJ_REDIS_URL when unset) cannot be reached: {exc}",
        ExitCode.UNREACHABLE,
    )


def _openai(exc: BaseException, settings: Settings | None) -> Problem | None:
    if "openai" not in sys.modules:
        return None
    import openai

    base = (settings.openai_base_url if settings else None) or "https://api.openai.com/v1"
    if isinstance(exc, openai.AuthenticationError):
        return Problem(
            f"the OpenAI API at {base} refused the key: check OPENAI_API_KEY", ExitCode.UNREACHABLE
        )
    if isinstance(exc, openai.APIConnectionError):
        return Problem(
            f"the OpenAI API at {base} cannot be reached ({exc}); check OPENAI_BASE_URL and the network",
            ExitCode.UNREACHABLE,
        )
    return None


def _url(url: str | None) -> str:
    return mask_url_password(url) if url else "(unset)"
