"""The Roomcast runtime: one process's settings, database, broker, hub and
routes, the same whether ``roomcast serve`` runs it or a host app mounts it::

    rc = Roomcast(authenticate=my_authenticate, hooks=Hooks(on_publish=moderate))
    app = FastAPI(lifespan=rc.lifespan)
    app.include_router(rc.router, prefix="/rt", dependencies=[Depends(require_session)])

    @app.post("/orders")
    async def order(...):
        await rc.publish("orders:new", {...})

The lifespan checks that the database (and, with ``startup_check``, the
broker) can be reached, or raises :class:`~roomcast.startup.StartupError`
naming the setting (startup.py); brings the database schema up to date, starts
the batched writer, lets persisted rooms on the memory broker continue where they left
off, starts the broker and hub, and stops everything in reverse order: drain
(every connection closed with 3000), hub and broker, writer (it commits what
is queued), database. With ``handle_signals`` (the standalone server) it also
drains on SIGTERM/SIGINT before uvicorn's own shutdown (drain.py); without
(a mounted app: the signals are the host's), uvicorn's shutdown starts the
drain itself (WebSockets under roomcast's protocol, SSE streams), and the
lifespan's exit drains whatever is left.

The server-side API (:class:`~roomcast.server_api.ServerAPI`: ``publish``,
``broadcast``, ``history``, ``presence``, ``disconnect``, ``unsubscribe``,
``stats``) works from the host's request handlers and background tasks while
the lifespan runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Depends

from .api import admin, contract, health, metrics, realtime, rooms, server
from .api import messages as messages_api
from .api.bodylimit import GuardedRouter, body_guard
from .api.deps import Authenticate, binder
from .api.web import default_web_dir, web_router
from .auth import Authority
from .backends import make_broker, make_engine
from .db.archive import SqlArchive
from .db.migrate import upgrade_async
from .db.store import MessageStore
from .db.writer import BatchedWriter
from .drain import drain_on_signals
from .hooks import HookRunner, Hooks
from .hub.archive import RoomOptions
from .hub.hub import Hub
from .hub.incidents import capture_logs
from .hub.memory import MemoryBroker
from .logs import redact
from .peerlog import PEER_LOG
from .runner import serving_config
from .server_api import ServerAPI
from .settings import Settings, SettingsError
from .startup import DATABASE, broker_setting, check_services, needs
from .transports.fastpath import fast_path_unavailable, is_fast_path
from .transports.services import Services

__all__ = ["Roomcast", "make_broker"]

log = logging.getLogger("roomcast")


class Roomcast(ServerAPI):
    """One process's roomcast: settings, database, broker and hub, and its routes.

    ``authenticate``: the application's own authentication, which replaces
    roomcast's tokens on WebSocket, SSE and REST (docs/embedding.md): called
    with the connection (and whatever it asks for with ``Depends``), it returns
    a :class:`~roomcast.auth.Principal`, or None to refuse (401), or raises
    (an ``HTTPException`` answers with its status). ``hooks``: in-process
    hooks (hooks.py). ``handle_signals``: drain on SIGTERM/SIGINT before the
    server's own shutdown; only for a process roomcast owns (``create_app``
    sets it), never for an app that mounts roomcast.
    """

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        authenticate: Authenticate | None = None,
        hooks: Hooks | None = None,
        handle_signals: bool = False,
    ) -> None:
        self.settings = settings = settings or Settings()
        self.handle_signals = handle_signals
        self.authority = Authority(settings, host_authenticates=authenticate is not None)
        self.engine = make_engine(settings)
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
            max_rooms=settings.max_rooms,
        )
        self.services = Services(
            self.hub,
            settings,
            self.authority,
            HookRunner(hooks, settings.hook_timeout, settings.max_payload_bytes),
            self.begin_drain,
        )
        self.running = False
        self.started_once = False
        self._drain: asyncio.Task[bool] | None = None
        bound = [Depends(binder(self, None))]
        guarded = [Depends(binder(self, authenticate))] if authenticate else bound
        self.api_router: APIRouter = GuardedRouter(body_guard(settings, self.authority))
        """WebSocket, SSE and REST: what acts for a principal (runs ``authenticate``).
        Request bodies are bounded and checked before they are read (api/bodylimit.py)."""
        for api in (realtime, rooms, messages_api, server):
            self.api_router.include_router(api.router, dependencies=guarded)
        self.admin_page = admin.available(settings, self.authority)
        """The admin page and ``/admin/overview`` are served (api/admin.py)."""
        if self.admin_page:
            self.api_router.include_router(admin.router, dependencies=guarded)
        self.probe_router = APIRouter()
        """``/healthz``, ``/readyz`` and (setting ``metrics``) ``/metrics``."""
        self.probe_router.include_router(health.router, dependencies=bound)
        if settings.metrics:
            self.probe_router.include_router(metrics.router, dependencies=bound)
        self.page_router = APIRouter()
        """The protocol's AsyncAPI document and page (api/contract.py), and the
        browser pages and roomcast.js (setting ``web``)."""
        self.page_router.include_router(contract.router, dependencies=bound)
        if settings.web:
            pages = web_router(settings.web_dir or default_web_dir(), admin=self.admin_page)
            self.page_router.include_router(pages, dependencies=bound)
        self.router = APIRouter()
        """All three: what ``include_router`` usually takes. A host whose router-level
        dependencies should not guard the probes (a load balancer has no session)
        includes :attr:`api_router` with them and the other two without."""
        for part in (self.api_router, self.probe_router, self.page_router):
            self.router.include_router(part)
        self.metrics = metrics.metrics_registry(self.hub)

    async def drain(self) -> bool:
        """Close every connection with 3000 and wait (``drain_timeout``)."""
        return await self.hub.shutdown(timeout=self.settings.drain_timeout)

    def begin_drain(self) -> None:
        """Start :meth:`drain` without waiting for it (the server is shutting down)."""
        if self._drain is None and self.running:
            log.info("the server is shutting down: draining connections")
            self._drain = asyncio.get_running_loop().create_task(self.drain())

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

    async def check_services(self) -> None:
        """Raise :class:`~roomcast.startup.StartupError` (naming the setting) unless
        the database answers and, with the setting ``startup_check``, the broker does:
        one connection each, within ``database_timeout`` and ``redis_timeout`` (a
        refused connection or an unknown host answers at once). The lifespan runs it
        before it starts anything; ``roomcast serve`` before uvicorn (startup.py)."""
        await check_services(self.settings, self.engine, self.hub.broker)

    def _check_server(self) -> None:
        """Refuse several uvicorn workers on the memory broker (each would keep its
        own rooms: decision 4), and log which WebSocket path the server gives."""
        config = serving_config()
        if config is None:
            log.info("WebSocket path: told at the first connection (not uvicorn's main thread)")
            return
        workers = getattr(config, "workers", 1) or 1
        if workers > 1 and isinstance(self.hub.broker, MemoryBroker):
            raise SettingsError(
                f"{workers} workers need the Redis broker (ROOMCAST_REDIS_URL): with the "
                "memory broker each worker would keep its own rooms"
            )
        protocol = config.ws_protocol_class
        advice = (
            "roomcast.run(app), or uvicorn --ws roomcast:WebSocketProtocol "
            "--ws-per-message-deflate false, for direct frame writes (docs/embedding.md)"
        )
        name = getattr(protocol, "__name__", protocol)
        if not is_fast_path(protocol) and fast_path_unavailable() is not None:
            log.info("WebSocket path: uvicorn's %s, fan-out through ASGI sends", name)
        elif not is_fast_path(protocol):
            log.warning(
                "WebSocket path: uvicorn's %s, fan-out through ASGI sends. %s", name, advice
            )
        elif getattr(config, "ws_per_message_deflate", False):
            log.warning(
                "WebSocket path: per-message compression is on, so clients that ask for it "
                "take the ASGI sends (slower): %s",
                advice,
            )
        else:
            log.info("WebSocket path: direct frame writes (roomcast's uvicorn protocol)")

    @contextlib.asynccontextmanager
    async def lifespan(self, app: Any) -> AsyncIterator[None]:
        """Start everything, yield while serving, then drain and stop (see above).
        A host with a lifespan of its own enters this one inside it."""
        app.state.roomcast = self
        PEER_LOG.configure(self.settings.peer_log_per_minute)  # per process: the last one started
        self.authority.warn_if_open()
        self._check_server()
        settings = self.settings
        database_url = settings.database_url.get_secret_value()
        redis_url = settings.redis_url.get_secret_value() if settings.redis_url else None
        try:
            await self.check_services()
            if settings.database_migrate:
                with needs(DATABASE, "the database", secret=database_url):
                    await upgrade_async(self.engine)
        except BaseException:
            await self.engine.dispose()
            raise
        await self.writer.start()
        try:
            with needs(DATABASE, "the database", secret=database_url):
                await self._continue_persisted_rooms()
            with needs(broker_setting(settings), "Redis", secret=redis_url):  # a cluster's map
                await self.hub.start()
            self._drain = None
            self.running = self.started_once = True
            try:
                signals = drain_on_signals(self.drain) if self.handle_signals else None
                incidents = capture_logs(redact) if self.admin_page else None  # for the admin page
                with signals or contextlib.nullcontext(), incidents or contextlib.nullcontext():
                    yield
            finally:
                await self.drain()
                self.running = False
                await self.hub.stop()
        finally:
            await self.writer.stop(timeout=self.settings.graceful_shutdown_timeout)
            await self.engine.dispose()
