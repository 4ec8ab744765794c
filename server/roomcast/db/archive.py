"""SqlArchive: the hub's Archive over the message store and the batched writer.

Room options are read from the ``rooms`` table and cached for ``options_ttl``
seconds per room, so a publish does not query the database; a room created or
deleted on another process is seen within that time. While the database is
down, a room's last known options still hold (the app loads every persisted
room's at startup), so publishes to rooms that are not persisted go on and
those to persisted rooms get ``unavailable``; a room never seen is taken as
not persisted (it cannot have been created while the database was down).

The cache holds the rooms asked about within ``options_ttl``, not every room
ever asked about: entries are kept oldest first and the expired ones let go as
new ones come in. Only options that differ from the room's defaults (a room
created with options of its own) are remembered after that, for an outage. Every database error is
already a :class:`~roomcast.hub.broker.Unavailable` (``DatabaseUnavailable``),
which the hub and the transports answer with ``unavailable``.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections import OrderedDict
from collections.abc import Callable

from ..hub.archive import Archive, RoomOptions
from ..hub.broker import Unavailable
from ..protocol.events import Event
from .store import MessageStore
from .writer import BatchedWriter

__all__ = ["SqlArchive"]


class SqlArchive(Archive):
    def __init__(
        self,
        store: MessageStore,
        writer: BatchedWriter,
        *,
        options_ttl: float = 5.0,
        defaults: Callable[[str], RoomOptions] | None = None,
    ) -> None:
        self.store = store
        self.defaults = defaults or (lambda room: RoomOptions())
        """The options of a room nobody created (its namespace's)."""
        self.writer = writer
        self.options_ttl = options_ttl
        self._options: OrderedDict[str, tuple[float, RoomOptions]] = OrderedDict()
        """(expiry, options) per room, oldest first (see :meth:`_keep`)."""
        self._known: dict[str, RoomOptions] = {}
        """Last known options that differ from the room's defaults: the outage fallback."""
        self._loading: dict[str, asyncio.Future[RoomOptions]] = {}

    async def options(self, room: str) -> RoomOptions:
        cached = self._options.get(room)
        if cached is not None and cached[0] > time.monotonic():
            return cached[1]
        # One query per room at a time: when a busy room's entry expires, every
        # publish that arrives before the answer waits for the same query rather
        # than sending its own (they piled up, and slowed the database further).
        loading = self._loading.get(room)
        if loading is None:
            loading = self._loading[room] = asyncio.ensure_future(self._load(room))
            loading.add_done_callback(functools.partial(self._loaded, room))
        return await asyncio.shield(loading)

    def _loaded(self, room: str, loading: asyncio.Future[RoomOptions]) -> None:
        if self._loading.get(room) is loading:
            del self._loading[room]

    async def _load(self, room: str) -> RoomOptions:
        me = asyncio.current_task()
        try:
            record = await self.store.get_room(room)
        except Unavailable:
            cached = self._options.get(room)
            return cached[1] if cached is not None else self._known.get(room) or self.defaults(room)
        options = (
            self.defaults(room)
            if record is None
            else RoomOptions(
                persist=record.persist,
                presence=record.presence,
                history_size=record.history_size,
            )
        )
        if self._loading.get(room) is not me:  # forgotten meanwhile: the answer is stale
            return options
        self._keep(room, options)
        return options

    def _keep(self, room: str, options: RoomOptions) -> None:
        """Cache ``options`` for ``options_ttl``. Entries stay in expiry order (a
        refreshed one moves to the end), so the expired ones are at the front: they
        go here, and the cache holds only the rooms asked about within the TTL."""
        now = time.monotonic()
        cached = self._options
        cached.pop(room, None)
        cached[room] = (now + self.options_ttl, options)
        if options == self.defaults(room):
            self._known.pop(room, None)
        else:
            self._known[room] = options
        while (oldest := next(iter(cached))) != room and cached[oldest][0] <= now:
            del cached[oldest]

    def remember(self, room: str, options: RoomOptions) -> None:
        """Seed a room's options (at startup), kept as the fallback of an outage."""
        self._keep(room, options)

    def forget(self, room: str) -> None:
        """Drop the cached options of ``room`` (it was just created or deleted here),
        and any query for them in flight: the next caller asks again."""
        self._options.pop(room, None)
        self._known.pop(room, None)
        self._loading.pop(room, None)

    @property
    def healthy(self) -> bool:
        return self.writer.healthy

    def submit(self, event: Event) -> asyncio.Future[None]:
        return self.writer.submit(event)

    async def after(self, room: str, epoch: str, offset: int, limit: int) -> list[Event]:
        return await self.store.after(room, epoch, offset, limit)

    async def before(self, room: str, epoch: str, before: int, limit: int) -> list[Event]:
        return await self.store.before(room, before, limit, epoch=epoch)
