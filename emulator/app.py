"""The emulator's ASGI application: routes for each resource family behind the gateway."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.routing import BaseRoute

from emulator import (
    admin,
    assistants,
    conversations,
    files,
    messages,
    responses,
    runs,
    threads,
    vector_store_files,
    vector_stores,
    webhook_admin,
)
from emulator.counters import Counters
from emulator.errors import ApiError, api_error_handler, http_error_handler
from emulator.faults import FaultInjector
from emulator.gateway import Gateway
from emulator.profile import Profile
from emulator.ratelimits import RateLimits
from emulator.state import Store
from emulator.webhooks import WebhookDispatcher

# Each module's ROUTES; the order matters only where paths overlap (static before parameters).
ROUTE_MODULES = (
    admin,
    webhook_admin,
    assistants,
    threads,
    messages,
    runs,
    files,
    vector_stores,
    vector_store_files,
    responses,
    conversations,
)


def _routes() -> list[BaseRoute]:
    return [route for module in ROUTE_MODULES for route in module.ROUTES]


def create_app(profile: Profile, api_key: str | None = None) -> Starlette:
    """Build the emulator app for `profile`; when `api_key` is set, `/v1/...` requests must carry it."""
    store = Store(profile)
    counters = Counters()
    faults = FaultInjector()
    limits = RateLimits()
    webhooks = WebhookDispatcher(store, counters)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        await webhooks.close()

    app = Starlette(
        routes=_routes(),
        middleware=[
            Middleware(
                Gateway,  # type: ignore[arg-type]
                store=store,
                counters=counters,
                faults=faults,
                limits=limits,
                api_key=api_key,
            )
        ],
        exception_handlers={ApiError: api_error_handler, HTTPException: http_error_handler},
        lifespan=lifespan,
    )
    app.state.store = store
    app.state.counters = counters
    app.state.faults = faults
    app.state.limits = limits
    app.state.webhooks = webhooks
    return app
