"""The async engine: a SQLite file by default, PostgreSQL through asyncpg.

:func:`create_engine` is the one place that turns a database URL into an
:class:`~sqlalchemy.ext.asyncio.AsyncEngine`. It accepts the driver-less
spellings people paste from elsewhere (``sqlite:///x.db``,
``postgresql://...``, ``postgres://...``) and picks the async driver.

Every engine it makes:

* serializes JSON with orjson, and stores an :class:`orjson.Fragment` as its
  bytes verbatim (the store hands event payloads over that way, so they are
  never decoded and encoded again on the write path);
* checks a pooled connection before use (``pool_pre_ping``), so a database
  restart costs one failed ping, not a failed request;
* bounds connecting: ``connect_timeout`` seconds, and on PostgreSQL a
  ``command_timeout`` per statement, so no caller waits forever on a dead
  server;
* on SQLite, turns on WAL (readers never wait for the writer) and a busy
  timeout (a writer waits that long for another one before giving up).

Caller's obligation: ``await engine.dispose()`` when done.
"""

from __future__ import annotations

import sqlite3
from typing import Any

import orjson
from sqlalchemy import event, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from sqlalchemy.ext.asyncio import create_async_engine as _create_async_engine

from ..protocol.errors import RoomcastError

__all__ = [
    "DEFAULT_URL",
    "UnusableDatabaseURL",
    "check_connection",
    "create_engine",
    "is_sqlite",
    "json_dumps",
    "normalize_url",
    "session_factory",
]

DEFAULT_URL = "sqlite+aiosqlite:///roomcast.db"

_ASYNC_DRIVERS = {
    "sqlite": "sqlite+aiosqlite",
    "postgresql": "postgresql+asyncpg",
    "postgres": "postgresql+asyncpg",
}


def json_dumps(value: Any) -> str:
    """The engines' JSON serializer (orjson; an ``orjson.Fragment`` is kept verbatim)."""
    return orjson.dumps(value).decode()


class UnusableDatabaseURL(RoomcastError, ValueError):
    """A database URL SQLAlchemy cannot use. The message says why without the URL
    (it may hold a password)."""


def normalize_url(url: str | URL) -> URL:
    """``url`` with the async driver this package uses for its dialect.

    ``sqlite://`` becomes ``sqlite+aiosqlite://`` and ``postgresql://`` (or
    ``postgres://``) becomes ``postgresql+asyncpg://``; a URL that already
    names a driver is returned unchanged.
    """
    parsed = make_url(url)
    driver = _ASYNC_DRIVERS.get(parsed.drivername)
    return parsed.set(drivername=driver) if driver else parsed


def is_sqlite(engine: AsyncEngine) -> bool:
    return engine.dialect.name == "sqlite"


def create_engine(
    url: str | URL = DEFAULT_URL,
    *,
    pool_size: int = 5,
    connect_timeout: float = 5.0,
    command_timeout: float = 30.0,
    busy_timeout: float = 5.0,
    echo: bool = False,
) -> AsyncEngine:
    """An async engine for ``url`` (see the module docstring for what is set).

    ``pool_size`` applies to PostgreSQL; ``busy_timeout`` to SQLite;
    ``connect_timeout`` to both; ``command_timeout`` to PostgreSQL.
    """
    try:
        parsed = normalize_url(url)
    except ArgumentError:
        raise UnusableDatabaseURL("not a SQLAlchemy URL (dialect+driver://...)") from None
    except ValueError:  # int() of the port
        raise UnusableDatabaseURL("the port must be a number, 1 to 65535") from None
    if parsed.port is not None and not 0 < parsed.port <= 65535:
        raise UnusableDatabaseURL("the port must be a number, 1 to 65535")
    options: dict[str, Any] = {
        "echo": echo,
        "pool_pre_ping": True,
        "json_serializer": json_dumps,
        "json_deserializer": orjson.loads,
    }
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        # sqlite3's own busy handler; the PRAGMA below sets the same on every connection.
        options["connect_args"] = {"timeout": busy_timeout}
    elif backend == "postgresql":
        options["pool_size"] = pool_size
        options["connect_args"] = {"timeout": connect_timeout, "command_timeout": command_timeout}
        options["pool_timeout"] = connect_timeout
    try:
        engine = _create_async_engine(parsed, **options)
    except NoSuchModuleError:
        raise UnusableDatabaseURL(
            f"no SQLAlchemy dialect or driver {parsed.drivername!r} is installed"
        ) from None
    except (ArgumentError, ImportError, TypeError, ValueError) as exc:
        raise UnusableDatabaseURL(f"cannot be used ({type(exc).__name__})") from None
    if backend == "sqlite":
        _configure_sqlite(engine, busy_timeout)
    return engine


def _configure_sqlite(engine: AsyncEngine, busy_timeout: float) -> None:
    busy_ms = int(busy_timeout * 1000)
    in_memory = engine.url.database in (None, "", ":memory:")

    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(f"PRAGMA busy_timeout = {busy_ms}")
            if not in_memory:
                cursor.execute("PRAGMA journal_mode = WAL")
        finally:
            cursor.close()


async def check_connection(engine: AsyncEngine) -> None:
    """Run ``SELECT 1`` on a connection of ``engine`` (the startup check, startup.py);
    raises whatever SQLAlchemy or the driver raises when the database cannot answer."""
    async with engine.connect() as connection:
        await connection.execute(text("SELECT 1"))


def check_sqlite_file(url: str) -> bool:
    """For a SQLite URL with a file, open that file with the standard library and run
    ``SELECT 1`` (raising its error, e.g. ``unable to open database file``) and return
    True; False for any other database (or an in-memory SQLite). Synchronous and
    without threads: aiosqlite's connection thread, when the file does not open,
    finishes after the failure is told, and raises "Event loop is closed" from its
    thread if the loop has ended meanwhile (``roomcast serve``'s check, a host's
    failed startup)."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return False
    connection = sqlite3.connect(parsed.database, timeout=1.0)
    try:
        connection.execute("SELECT 1")
    finally:
        connection.close()
    return True


def session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    """ORM sessions on ``engine``; objects stay readable after commit."""
    return async_sessionmaker(engine, expire_on_commit=False)
