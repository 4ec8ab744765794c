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
from collections.abc import AsyncIterator, Coroutine
from typing import Any

from fastapi import FastAPI
from starlette.types import Receive, Scope, Send

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


class _Standalone(FastAPI):
    """FastAPI, with ``/ws`` and event streams answered before anything of
    FastAPI's runs (:meth:`enter`).

    ``__call__`` stays a coroutine function, so every tool that asks
    (``inspect.iscoroutinefunction``: schemathesis, servers other than uvicorn)
    sees an ASGI 3 application. What ``roomcast serve`` hands uvicorn is
    :func:`serve_app`'s :class:`Entry` instead, whose ``__call__`` is
    :meth:`enter` itself: it returns the connection's coroutine, so an open
    connection keeps no frame of FastAPI's, Starlette's, their middleware's or
    this class's suspended for its life (docs/performance.md).

    Only while nothing would see /ws on the way: once middleware is added to the
    app (``add_middleware``, which wraps /ws, decision 15 in docs/decisions.md),
    or with FastAPI's own tracing on, /ws takes the stack again, and roomcast's
    :class:`~.api.realtime.DirectWebSocketRoute` inside it answers."""

    own_middleware = 0
    """How many of ``user_middleware`` are create_app's own."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.enter(scope, receive, send)

    def enter(self, scope: Scope, receive: Receive, send: Send) -> Coroutine[Any, Any, None]:
        """The coroutine that answers ``scope``: the connection's own for ``/ws``
        and event streams, FastAPI's for everything else."""
        if scope["type"] == "websocket":
            if self.root_path:
                scope["root_path"] = self.root_path  # as FastAPI's __call__ does
            if (
                realtime.websocket_path(scope)
                and len(self.user_middleware) == self.own_middleware
                and not _traced(self)
            ):
                scope["app"] = self  # as Starlette's does: get_roomcast reads app.state
                return realtime.websocket_connection(scope, receive, send)
        elif scope["type"] == "http" and scope.get("method") == "GET":  # event streams, too
            if self.root_path:
                scope["root_path"] = self.root_path
            if len(self.user_middleware) == self.own_middleware and not _traced(self):
                stream = realtime.sse_connection(scope, receive, send)
                if stream is not None:
                    scope["app"] = self
                    return stream
        return super().__call__(scope, receive, send)


class Entry:
    """What ``roomcast serve`` gives uvicorn: the standalone app, entered through
    :meth:`_Standalone.enter` with no frame of its own. A plain function marked as
    a coroutine function for uvicorn (which asks ``asyncio.iscoroutinefunction``,
    realtime.asgi3); :attr:`app` is the application."""

    __slots__ = ("app",)

    def __init__(self, app: _Standalone) -> None:
        self.app = app

    @realtime.asgi3
    def __call__(self, scope: Scope, receive: Receive, send: Send) -> Coroutine[Any, Any, None]:
        return self.app.enter(scope, receive, send)


def _traced(app: FastAPI) -> bool:
    """FastAPI's native telemetry would trace this app's requests (FastAPI 0.165+)."""
    telemetry = getattr(app, "_native_telemetry", None)
    return telemetry is not None and bool(telemetry.enabled())


def create_app(settings: Settings | None = None) -> FastAPI:
    """The standalone roomcast application: it owns its process, so it drains on
    SIGTERM/SIGINT and tunes the garbage collector (gctune.py)."""
    rc = Roomcast(settings, handle_signals=True)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with rc.lifespan(app):
            tune_gc(rc.settings.gc_freeze, rc.settings.gc_threshold)
            yield

    app = _Standalone(
        title="roomcast",
        version=__version__,
        description=DESCRIPTION,
        openapi_tags=OPENAPI_TAGS,
        lifespan=lifespan,
    )
    offline_docs(app)  # /docs and /redoc with their files from here, not from a CDN
    app.include_router(rc.router)
    app.add_middleware(realtime.DirectWebSocketRoute)  # /ws past the rest (realtime.py)
    install_error_handlers(app)
    app.own_middleware = len(app.user_middleware)
    return app


def serve_app() -> Entry:
    """The factory ``roomcast serve`` runs: :func:`create_app`'s application,
    entered without a frame of its own per connection (:class:`Entry`)."""
    app = create_app()
    assert isinstance(app, _Standalone)
    return Entry(app)
