"""create_app(settings) -> FastAPI, and the Roomcast runtime a host app can mount.

Standalone::

    app = create_app()              # what `roomcast serve` runs

Mounted in an existing FastAPI app::

    rc = Roomcast(Settings())
    app = FastAPI(lifespan=rc.lifespan)
    app.include_router(rc.router)

The lifespan starts the broker and hub, installs the graceful drain (close
3000 on SIGTERM/SIGINT, see drain.py) and stops them in reverse order.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator

from fastapi import APIRouter, FastAPI

from . import __version__
from .api import health, messages, realtime
from .api.errors import install_error_handlers
from .drain import drain_on_signals
from .hub.broker import Broker
from .hub.hub import Hub
from .hub.memory import MemoryBroker
from .settings import Settings

__all__ = ["Roomcast", "create_app", "make_broker"]

log = logging.getLogger("roomcast")


def make_broker(settings: Settings) -> Broker:
    """The broker the settings ask for: memory by default, Redis with a URL."""
    if settings.redis_url:
        from .hub.redis import RedisBroker

        return RedisBroker(
            settings.redis_url,
            history_size=settings.history_size,
            room_ttl=settings.room_ttl,
            presence_ttl=settings.presence_ttl,
            presence_refresh=settings.presence_refresh,
            prefix=settings.redis_prefix,
            sharded=settings.redis_sharded,
            cluster=settings.redis_cluster,
            timeout=settings.redis_timeout,
            ping_interval=settings.redis_ping_interval,
            backoff_cap=settings.redis_backoff_cap,
        )
    return MemoryBroker(history_size=settings.history_size, room_ttl=settings.room_ttl)


class Roomcast:
    """One process's roomcast: settings, broker and hub, and its routes."""

    def __init__(self, settings: Settings | None = None) -> None:
        self.settings = settings or Settings()
        self.hub = Hub(
            make_broker(self.settings),
            presence=self.settings.presence,
            send_timeout=self.settings.send_timeout,
        )
        self.router = APIRouter()
        self.router.include_router(realtime.router)
        self.router.include_router(messages.router)
        self.router.include_router(health.router)

    async def drain(self) -> bool:
        """Close every connection with 3000 and wait (``drain_timeout``)."""
        return await self.hub.shutdown(timeout=self.settings.drain_timeout)

    @contextlib.asynccontextmanager
    async def lifespan(self, app: FastAPI) -> AsyncIterator[None]:
        app.state.roomcast = self
        await self.hub.start()
        try:
            with drain_on_signals(self.drain):
                yield
        finally:
            await self.drain()
            await self.hub.stop()


def create_app(settings: Settings | None = None) -> FastAPI:
    """The standalone roomcast application."""
    rc = Roomcast(settings)
    app = FastAPI(title="roomcast", version=__version__, lifespan=rc.lifespan)
    app.include_router(rc.router)
    install_error_handlers(app)
    return app
