"""SqlArchive: the hub's Archive over the message store and the batched writer.

Room options are read from the ``rooms`` table and cached for ``options_ttl``
seconds per room, so a publish does not query the database; a room created or
deleted on another process is seen within that time. While the database is
down, a room's last known options still hold (the app loads every persisted
room's at startup), so publishes to rooms that are not persisted go on and
those to persisted rooms get ``unavailable``; a room never seen is taken as
not persisted (it cannot have been created while the database was down). Every database error is
already a :class:`~roomcast.hub.broker.Unavailable` (``DatabaseUnavailable``),
which the hub and the transports answer with ``unavailable``.
"""

from __future__ import annotations

import asyncio
import functools
import time
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
        self._options: dict[str, tuple[float, RoomOptions]] = {}
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
            loading = self._loading[room] = asyncio.ensure_future(self._load(room, cached))
            loading.add_done_callback(functools.partial(self._loaded, room))
        return await asyncio.shield(loading)

    def _loaded(self, room: str, loading: asyncio.Future[RoomOptions]) -> None:
        if self._loading.get(room) is loading:
            del self._loading[room]

    async def _load(self, room: str, cached: tuple[float, RoomOptions] | None) -> RoomOptions:
        me = asyncio.current_task()
        try:
            record = await self.store.get_room(room)
        except Unavailable:
            return cached[1] if cached is not None else self.defaults(room)
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
        now = time.monotonic()
        if len(self._options) > 100_000:  # bounded: drop expired rooms that are not persisted
            self._options = {k: v for k, v in self._options.items() if v[0] > now or v[1].persist}
        self._options[room] = (now + self.options_ttl, options)
        return options

    def remember(self, room: str, options: RoomOptions) -> None:
        """Seed a room's options (at startup), kept as the fallback of an outage."""
        self._options[room] = (time.monotonic() + self.options_ttl, options)

    def forget(self, room: str) -> None:
        """Drop the cached options of ``room`` (it was just created or deleted here),
        and any query for them in flight: the next caller asks again."""
        self._options.pop(room, None)
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
