"""create_app(settings) -> FastAPI: the standalone roomcast application.

Standalone::

    app = create_app()              # what `roomcast serve` runs

Mounted in an existing FastAPI app, use the runtime directly (runtime.py,
docs/embedding.md)::

    rc = Roomcast()
    app = FastAPI(lifespan=rc.lifespan)
    app.include_router(rc.router, prefix="/rt")
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from fastapi import FastAPI

from . import __version__
from .api import realtime
from .api.docs import offline_docs
from .api.errors import install_error_handlers
from .gctune import tune_gc
from .runtime import Roomcast, make_broker
from .settings import Settings

__all__ = ["Roomcast", "create_app", "make_broker"]

DESCRIPTION = (
    "Rooms over WebSocket (`/ws`) and Server-Sent Events, with history, resume and "
    "presence. This page is the REST surface; the real-time protocol is described by an "
    "AsyncAPI 3.0 document: [asyncapi.json](asyncapi.json), and as a page: "
    "[asyncapi](asyncapi)."
)

OPENAPI_TAGS: list[dict[str, object]] = [
    {
        "name": realtime.SSE_TAG,
        "description": "Rooms as endless `text/event-stream` responses, resumable by "
        "`Last-Event-ID`. The events they carry (`subscribed`, `message`, `join`, `leave`, "
        "`reset`, `close`, `error`) are described, with the WebSocket protocol, by the "
        "AsyncAPI document: [asyncapi](asyncapi) ([asyncapi.json](asyncapi.json)). "
        "Try them with `curl -N`: Swagger UI waits for a response to end.",
    },
    {"name": "rooms", "description": "Create and list rooms, publish, history, presence."},
    {"name": "server", "description": "Backends acting on every process (admin only)."},
    {"name": "admin", "description": "What the admin page (/admin) shows (admin only)."},
    {"name": "health", "description": "Liveness, readiness and metrics."},
]


def create_app(settings: Settings | None = None) -> FastAPI:
    """The standalone roomcast application: it owns its process, so it drains on
    SIGTERM/SIGINT and tunes the garbage collector (gctune.py)."""
    rc = Roomcast(settings, handle_signals=True)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with rc.lifespan(app):
            tune_gc(rc.settings.gc_freeze, rc.settings.gc_threshold)
            yield

    app = FastAPI(
        title="roomcast",
        version=__version__,
        description=DESCRIPTION,
        openapi_tags=OPENAPI_TAGS,
        lifespan=lifespan,
    )
    offline_docs(app)  # /docs and /redoc with their files from here, not from a CDN
    app.include_router(rc.router)
    app.add_middleware(realtime.DirectWebSocketRoute)  # /ws without the stack (realtime.py)
    install_error_handlers(app)
    return app
