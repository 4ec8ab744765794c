"""create_app(settings) -> FastAPI, and the Roomcast runtime a host app can mount.

Standalone::

    app = create_app()              # what `roomcast serve` runs

Mounted in an existing FastAPI app::

    rc = Roomcast(Settings())
    app = FastAPI(lifespan=rc.lifespan)
    app.include_router(rc.router)

The lifespan brings the database schema up to date, starts the batched
writer, lets persisted rooms on the memory broker continue where they left
off, starts the broker and hub, installs the graceful drain (close 3000 on
SIGTERM/SIGINT, see drain.py), and stops everything in reverse order: drain,
hub and broker, writer (it commits what is queued), database.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator

from fastapi import APIRouter, FastAPI

from . import __version__
from .api import health, messages, metrics, realtime, rooms
from .api.errors import install_error_handlers
from .api.web import default_web_dir, web_router
from .auth import Authority
from .db.archive import SqlArchive
from .db.engine import create_engine
from .db.migrate import upgrade_async
from .db.store import MessageStore
from .db.writer import BatchedWriter
from .drain import drain_on_signals
from .gctune import tune_gc
from .hub.archive import RoomOptions
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
    """One process's roomcast: settings, database, broker and hub, and its routes."""

    def __init__(self, settings: Settings | None = None) -> None:
        self.settings = settings = settings or Settings()
        self.authority = Authority(settings)
        timeout = settings.database_timeout
        self.engine = create_engine(
            settings.database_url, connect_timeout=timeout, busy_timeout=timeout
        )
        self.store = MessageStore(self.engine)
        self.writer = BatchedWriter(
            self.store,
            max_pending=settings.writer_max_pending,
            max_batch=settings.writer_max_batch,
            max_delay=settings.writer_max_delay,
        )
        self.archive = SqlArchive(
            self.store,
            self.writer,
            options_ttl=settings.room_options_ttl,
            defaults=self.authority.namespaces.room_options,
        )
        self.hub = Hub(
            make_broker(settings),
            presence=settings.presence,
            send_timeout=settings.send_timeout,
            archive=self.archive,
            replay_limit=settings.replay_limit,
        )
        self.router = APIRouter()
        self.router.include_router(realtime.router)
        self.router.include_router(rooms.router)
        self.router.include_router(messages.router)
        self.router.include_router(health.router)
        self.metrics = metrics.metrics_registry(self.hub)
        if settings.metrics:
            self.router.include_router(metrics.router)
        if settings.web:
            self.router.include_router(web_router(settings.web_dir or default_web_dir()))

    async def drain(self) -> bool:
        """Close every connection with 3000 and wait (``drain_timeout``)."""
        return await self.hub.shutdown(timeout=self.settings.drain_timeout)

    async def _continue_persisted_rooms(self) -> None:
        """Every persisted room's options are known before the first publish (they
        hold through a database outage); on the memory broker those rooms, and the
        rooms of persisted namespaces, resume their epoch and offsets (and latest
        history) from SQL."""
        persisted: list[str] = []
        offset, total = 0, 1
        while offset < total:
            records, total = await self.store.list_rooms(offset, 500)
            offset += len(records) or total
            for record in records:
                if record.persist:
                    options = RoomOptions(True, record.presence, record.history_size)
                    self.archive.remember(record.name, options)
                    persisted.append(record.name)
        broker = self.hub.broker
        if not isinstance(broker, MemoryBroker):
            return  # Redis keeps positions itself
        namespaces = self.authority.namespaces
        if namespaces.any_persisted:
            created = set(persisted)
            persisted += [
                room
                for room in await self.store.message_rooms()
                if room not in created and namespaces.room_options(room).persist
            ]
        for room in persisted:
            position = await self.store.latest_position(room)
            if position is not None:
                events = await self.store.before(
                    room, None, broker.history_size, epoch=position.epoch
                )
                broker.seed(room, position, events)

    @contextlib.asynccontextmanager
    async def lifespan(self, app: FastAPI) -> AsyncIterator[None]:
        app.state.roomcast = self
        self.authority.warn_if_open()
        if self.settings.database_migrate:
            await upgrade_async(self.engine)
        await self.writer.start()
        try:
            await self._continue_persisted_rooms()
            await self.hub.start()
            try:
                with drain_on_signals(self.drain):
                    yield
            finally:
                await self.drain()
                await self.hub.stop()
        finally:
            await self.writer.stop(timeout=self.settings.graceful_shutdown_timeout)
            await self.engine.dispose()


def create_app(settings: Settings | None = None) -> FastAPI:
    """The standalone roomcast application."""
    rc = Roomcast(settings)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with rc.lifespan(app):
            tune_gc(rc.settings.gc_freeze, rc.settings.gc_threshold)
            yield

    app = FastAPI(title="roomcast", version=__version__, lifespan=lifespan)
    app.include_router(rc.router)
    app.add_middleware(realtime.DirectWebSocketRoute)  # /ws without the stack (realtime.py)
    install_error_handlers(app)
    return app
