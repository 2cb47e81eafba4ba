"""The webhook receiver (``ajobs webhooks``): OpenAI's signed events wake the jobs whose background
responses ended, so polling is only the safety net.

One route (``AJ_WEBHOOK_PATH``, POST). Each delivery is verified with the openai SDK's own helper
(Standard Webhooks: HMAC-SHA256 over ``webhook-id.webhook-timestamp.body``, a timestamp within
``AJ_WEBHOOK_TOLERANCE`` seconds); a bad, stale or unsigned delivery gets 400 and changes nothing. A
verified ``response.completed|failed|cancelled|incomplete`` makes that job's poll due now, in one Redis
script (`worker.store.wakeups`), and is answered 200 at once: the poll loop retrieves the response and
the usual finish runs, so the webhook never carries a result and a lost webhook costs lag, not a job.
Duplicates (the same ``webhook-id``) have one effect; an event about a response not yet recorded is
acknowledged, counted and remembered for a few minutes, so an event that overtakes its create's answer
still wakes the job. Any number of receivers may run behind a load balancer: they share only Redis.
"""

from __future__ import annotations

import contextlib
import logging

import openai
import orjson
import redis
import redis.asyncio as aioredis
from aiohttp import web
from openai import InvalidWebhookSignatureError

from worker.connections import async_redis_client
from worker.settings import ConfigurationError, Settings
from worker.store.wakeups import AsyncWakeups

log = logging.getLogger(__name__)

RESPONSE_ENDS = frozenset(
    {"response.completed", "response.failed", "response.cancelled", "response.incomplete"}
)
"""The events that end a background response: each wakes its job."""
EARLY_EVENT_S = 300.0
"""How long an event about a response no job has recorded yet is remembered."""


class Receiver:
    """Verifies deliveries and wakes jobs."""

    def __init__(self, settings: Settings, wakeups: AsyncWakeups):
        if settings.webhook_secret is None:
            raise ConfigurationError(
                "the webhook receiver needs AJ_WEBHOOK_SECRET (or OPENAI_WEBHOOK_SECRET): the whsec_... "
                "secret of the endpoint registered with OpenAI"
            )
        self.secret = settings.webhook_secret.get_secret_value()
        self.tolerance = settings.webhook_tolerance
        self.wakeups = wakeups
        # The SDK's verifier lives on a client; this one never sends a request.
        self.verifier = openai.OpenAI(api_key="not-used-by-the-webhook-receiver", max_retries=0).webhooks

    async def deliver(self, request: web.Request) -> web.Response:
        """One delivery: 400 when it cannot be verified, else 200 once its job is woken (503 if Redis is
        away, so OpenAI delivers it again later)."""
        body = await request.read()
        try:
            self.verifier.verify_signature(
                body, request.headers, secret=self.secret, tolerance=self.tolerance
            )
            event = orjson.loads(body)
            kind, response_id = str(event["type"]), str(event["data"]["id"])
            delivery_id = request.headers["webhook-id"]
        except (InvalidWebhookSignatureError, ValueError, KeyError, TypeError) as exc:
            await self._count_rejected()
            return web.Response(status=400, text=f"refused: {_why(exc)}")
        try:
            if kind in RESPONSE_ENDS:
                outcome = (await self.wakeups.wake(delivery_id, response_id)).value
            else:
                await self.wakeups.ignored()
                outcome = "ignored"
        except redis.RedisError as exc:
            log.warning(
                "webhook %s not acted on, Redis is unreachable (%s); OpenAI will deliver it again",
                delivery_id,
                exc,
            )
            return web.Response(status=503, text="try again later")
        return web.json_response({"received": outcome})

    async def _count_rejected(self) -> None:
        with contextlib.suppress(redis.RedisError):
            await self.wakeups.rejected()


def _why(exc: BaseException) -> str:
    if isinstance(exc, InvalidWebhookSignatureError):
        return str(exc)
    if isinstance(exc, ValueError) and "header" in str(exc).lower():
        return f"missing webhook header ({exc})"
    return "the body is not an OpenAI webhook event"


async def health(request: web.Request) -> web.Response:
    """Liveness for load balancers and probes."""
    return web.json_response({"ok": True})


def create_app(settings: Settings, client: aioredis.Redis | None = None) -> web.Application:
    """The receiver's aiohttp application on ``client`` (a client for ``settings.redis_url`` when None)."""
    client = client or async_redis_client(settings, socket_timeout=10)
    wakeups = AsyncWakeups(client, dedupe_s=settings.webhook_dedupe_ttl, early_s=EARLY_EVENT_S)
    receiver = Receiver(settings, wakeups)
    app = web.Application(client_max_size=1024 * 1024)
    app.router.add_post(settings.webhook_path, receiver.deliver)
    app.router.add_get("/health", health)

    async def close(_: web.Application) -> None:
        await client.aclose()

    app.on_cleanup.append(close)
    return app


def serve(settings: Settings) -> None:
    """Serve the receiver on ``AJ_WEBHOOK_ADDRESS:AJ_WEBHOOK_PORT`` until stopped."""
    app = create_app(settings)
    print(
        f"webhook receiver on http://{settings.webhook_address}:{settings.webhook_port}{settings.webhook_path}",
        flush=True,
    )
    web.run_app(app, host=settings.webhook_address, port=settings.webhook_port, print=None, access_log=None)
