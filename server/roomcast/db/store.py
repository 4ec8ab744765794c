"""MessageStore: rooms and persisted messages, in explicit SQL.

Exceptions::

    hub.broker.Unavailable                  the client gets ``unavailable`` (HTTP 503)
    └── hub.archive.ArchiveUnavailable
        └── DatabaseUnavailable             the database cannot serve the request now:
            │                               refused or lost connection, timeout, lock
            │                               held too long, read-only or missing file
            ├── WriterOverloaded            (db.writer) the write queue is full
            └── WriterClosed                (db.writer) the writer is not running
    Exception
    └── RoomExists                          create_room for a name that is taken

Anything else that escapes (IntegrityError other than the ones handled here,
ProgrammingError, DataError) is a bug, not an outage, and is not translated.

Positions follow DESIGN.md: a room's events carry ``(epoch, offset)``; offsets
are unique within an epoch, and a new epoch starts a new stream. The store
never invents positions: it keeps what the broker assigned.

Every method opens its own short transaction; the store holds no connection
between calls and is safe to share between tasks.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import orjson
from sqlalchemy import Table, delete, exc, func, select, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from ..hub.archive import ArchiveUnavailable
from ..protocol.errors import RoomcastError
from ..protocol.events import Event, Position
from .engine import json_dumps
from .models import MessageRecord, RoomRecord

__all__ = ["DatabaseUnavailable", "MessageStore", "RoomExists", "is_outage", "unavailable"]

ROOMS: Table = RoomRecord.__table__  # type: ignore[attr-defined]
MESSAGES: Table = MessageRecord.__table__  # type: ignore[attr-defined]

_MESSAGE_COLUMNS = (
    MESSAGES.c.room,
    MESSAGES.c.epoch,
    MESSAGES.c.offset,
    MESSAGES.c.data,
    MESSAGES.c.sender,
    MESSAGES.c.ts,
)

# Errors that mean "bad statement or bad data", never "database down".
_NOT_AN_OUTAGE = (exc.IntegrityError, exc.ProgrammingError, exc.DataError, exc.NotSupportedError)


class DatabaseUnavailable(ArchiveUnavailable):
    """The database cannot serve the request now (see the module docstring).

    An :class:`~roomcast.hub.archive.ArchiveUnavailable`, so the hub, the
    transports and the routers answer it with ``unavailable`` like any other
    outage, without knowing about SQL."""


class RoomExists(RoomcastError):
    """A room with that name already exists."""

    def __init__(self, name: str) -> None:
        super().__init__(f"room {name!r} already exists")
        self.name = name


def is_outage(error: BaseException) -> bool:
    """Whether ``error`` means the database is unreachable or cannot write now."""
    if isinstance(error, exc.DBAPIError):
        return error.connection_invalidated or not isinstance(error, _NOT_AN_OUTAGE)
    # Pool exhausted, connect timeout, refused or reset connection, and the
    # driver errors SQLAlchemy lets through while (re)connecting.
    if isinstance(error, exc.TimeoutError | exc.DisconnectionError):
        return True
    if isinstance(error, OSError | TimeoutError | ConnectionError):
        return True
    module = type(error).__module__
    return module.startswith(("asyncpg", "aiosqlite", "sqlite3"))


INT64_MAX = 2**63 - 1


def _bounded(value: int) -> int:
    """``value`` within the range every driver binds (SQLite and BIGINT are int64):
    any int a caller passes is answered, never an overflow error."""
    return max(-INT64_MAX, min(value, INT64_MAX))


def unavailable(error: BaseException) -> DatabaseUnavailable:
    """A DatabaseUnavailable that says what went wrong (``from error`` keeps the chain)."""
    return DatabaseUnavailable(f"database unavailable: {str(error) or type(error).__name__}")


def _event(row: Sequence[Any]) -> Event:
    room, epoch, offset, data, sender, ts = row
    return Event(room, epoch, offset, orjson.dumps(data), sender, ts)


class MessageStore:
    """Rooms and messages on one engine (from :func:`roomcast.db.engine.create_engine`).

    The store does not own the engine: whoever made it disposes it.
    """

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        dialect = engine.dialect
        self._dialect = dialect.name
        # Payloads go in as their JSON bytes untouched when the engine's serializer
        # is ours (it writes an orjson.Fragment verbatim); otherwise as values.
        self._raw_json = getattr(dialect, "_json_serializer", None) is json_dumps

    @asynccontextmanager
    async def _begin(self) -> AsyncIterator[AsyncConnection]:
        """A transaction; outage errors (on connect, run or commit) become DatabaseUnavailable."""
        try:
            async with self.engine.begin() as conn:
                yield conn
        except DatabaseUnavailable:
            raise
        except Exception as error:
            if is_outage(error):
                raise unavailable(error) from error
            raise

    # -- health ------------------------------------------------------------

    async def ping(self) -> bool:
        """Whether the database answers a trivial query now (for /readyz)."""
        try:
            async with self._begin() as conn:
                await conn.execute(text("SELECT 1"))
        except DatabaseUnavailable:
            return False
        return True

    # -- rooms -------------------------------------------------------------

    async def create_room(
        self,
        name: str,
        persist: bool = False,
        history_size: int | None = None,
        presence: bool = True,
    ) -> RoomRecord:
        """Create a room; raises :class:`RoomExists` when the name is taken."""
        record = RoomRecord(
            name=name,
            persist=persist,
            history_size=history_size,
            presence=presence,
            created_at=time.time(),
        )
        stmt = (
            self._insert(ROOMS)
            .values(record.model_dump())
            .on_conflict_do_nothing(index_elements=[ROOMS.c.name])
            .returning(ROOMS.c.name)
        )
        async with self._begin() as conn:
            created = (await conn.execute(stmt)).first()
        if created is None:
            raise RoomExists(name)
        return record

    async def get_room(self, name: str) -> RoomRecord | None:
        async with self._begin() as conn:
            row = (await conn.execute(select(ROOMS).where(ROOMS.c.name == name))).first()
        return None if row is None else RoomRecord(**row._mapping)

    async def list_rooms(self, offset: int = 0, limit: int = 100) -> tuple[list[RoomRecord], int]:
        """One page of rooms by name, and how many rooms there are in all.

        A negative ``offset`` counts as 0; a ``limit`` below 1 gives no rooms.
        """
        page = select(ROOMS).order_by(ROOMS.c.name)
        page = page.offset(_bounded(max(offset, 0))).limit(_bounded(max(limit, 0)))
        async with self._begin() as conn:
            total = (await conn.execute(select(func.count()).select_from(ROOMS))).scalar_one()
            rooms = [RoomRecord(**row._mapping) for row in await conn.execute(page)]
        return rooms, total

    async def delete_room(self, name: str) -> bool:
        """Delete a room and all its messages; False when there was no such room."""
        async with self._begin() as conn:
            await conn.execute(delete(MESSAGES).where(MESSAGES.c.room == name))
            result = await conn.execute(delete(ROOMS).where(ROOMS.c.name == name))
        return result.rowcount > 0

    # -- messages ----------------------------------------------------------

    async def insert_many(self, events: Sequence[Event]) -> int:
        """Insert ``events`` in one transaction; how many were new.

        Idempotent: an event whose ``(room, epoch, offset)`` is already stored
        is skipped, so a batch may be written again after a failed commit.
        """
        if not events:
            return 0
        raw = self._raw_json
        rows = [
            {
                "room": e.room,
                "epoch": e.epoch,
                "offset": e.offset,
                "sender": e.sender,
                "data": orjson.Fragment(e.data) if raw else orjson.loads(e.data),
                "ts": e.ts,
            }
            for e in events
        ]
        stmt = (
            self._insert(MESSAGES)
            .on_conflict_do_nothing(
                index_elements=[MESSAGES.c.room, MESSAGES.c.epoch, MESSAGES.c.offset]
            )
            .returning(MESSAGES.c.id)
        )
        async with self._begin() as conn:
            result = await conn.execute(stmt, rows)
            return len(result.all())

    async def before(
        self, room: str, before: int | None = None, limit: int = 100, *, epoch: str | None = None
    ) -> list[Event]:
        """Up to ``limit`` messages of one epoch with offset < ``before``, oldest first.

        The epoch is ``epoch`` when given, else the room's newest (that of its
        latest message). ``before=None`` means from the newest message. Page
        further back with ``before`` = the first returned event's offset.
        """
        if limit < 1:
            return []
        async with self._begin() as conn:
            if epoch is None:
                epoch = await self._newest_epoch(conn, room)
                if epoch is None:
                    return []
            query = select(*_MESSAGE_COLUMNS).where(
                MESSAGES.c.room == room, MESSAGES.c.epoch == epoch
            )
            if before is not None:
                query = query.where(MESSAGES.c.offset < _bounded(before))
            query = query.order_by(MESSAGES.c.offset.desc()).limit(_bounded(limit))
            rows = (await conn.execute(query)).all()
        return [_event(row) for row in reversed(rows)]

    async def after(self, room: str, epoch: str, offset: int, limit: int = 100) -> list[Event]:
        """Up to ``limit`` messages of ``epoch`` with offset > ``offset``, oldest first."""
        if limit < 1 or offset >= INT64_MAX:
            return []
        query = (
            select(*_MESSAGE_COLUMNS)
            .where(
                MESSAGES.c.room == room,
                MESSAGES.c.epoch == epoch,
                MESSAGES.c.offset > _bounded(offset),
            )
            .order_by(MESSAGES.c.offset)
            .limit(_bounded(limit))
        )
        async with self._begin() as conn:
            rows = (await conn.execute(query)).all()
        return [_event(row) for row in rows]

    async def latest_position(self, room: str) -> Position | None:
        """The position of the room's newest stored message, or None when it has none."""
        async with self._begin() as conn:
            epoch = await self._newest_epoch(conn, room)
            if epoch is None:
                return None
            offset = (
                await conn.execute(
                    select(func.max(MESSAGES.c.offset)).where(
                        MESSAGES.c.room == room, MESSAGES.c.epoch == epoch
                    )
                )
            ).scalar_one()
        return Position(epoch, int(offset))

    async def message_rooms(self) -> list[str]:
        """Every room with stored messages, by name."""
        query = select(MESSAGES.c.room).distinct().order_by(MESSAGES.c.room)
        async with self._begin() as conn:
            return [row[0] for row in await conn.execute(query)]

    async def count(self, room: str) -> int:
        """How many messages of ``room`` are stored (all epochs)."""
        query = select(func.count()).select_from(MESSAGES).where(MESSAGES.c.room == room)
        async with self._begin() as conn:
            return int((await conn.execute(query)).scalar_one())

    # -- helpers -----------------------------------------------------------

    @staticmethod
    async def _newest_epoch(conn: AsyncConnection, room: str) -> str | None:
        """The epoch of the room's most recently inserted message (index room, id)."""
        query = (
            select(MESSAGES.c.epoch)
            .where(MESSAGES.c.room == room)
            .order_by(MESSAGES.c.id.desc())
            .limit(1)
        )
        epoch: str | None = (await conn.execute(query)).scalar_one_or_none()
        return epoch

    def _insert(self, table: Table) -> postgresql.Insert | sqlite.Insert:
        """INSERT for this dialect (both have ON CONFLICT DO NOTHING)."""
        if self._dialect == "postgresql":
            return postgresql.insert(table)
        if self._dialect == "sqlite":
            return sqlite.insert(table)
        raise NotImplementedError(f"unsupported database dialect {self._dialect!r}")
