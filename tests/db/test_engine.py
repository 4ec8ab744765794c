"""create_engine and session_factory on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from roomcast.db.engine import DEFAULT_URL, create_engine, normalize_url, session_factory
from roomcast.db.models import RoomRecord
from roomcast.db.store import MessageStore


@pytest.mark.parametrize(
    ("given", "driver"),
    [
        ("sqlite:///x.db", "sqlite+aiosqlite"),
        ("sqlite+aiosqlite:///x.db", "sqlite+aiosqlite"),
        ("postgresql://u:p@h/db", "postgresql+asyncpg"),
        ("postgres://u:p@h/db", "postgresql+asyncpg"),
        ("postgresql+asyncpg://u:p@h/db", "postgresql+asyncpg"),
    ],
)
def test_urls_get_the_async_driver(given: str, driver: str) -> None:
    assert normalize_url(given).drivername == driver


def test_the_default_is_a_sqlite_file_in_the_working_directory() -> None:
    url = normalize_url(DEFAULT_URL)
    assert (url.drivername, url.database) == ("sqlite+aiosqlite", "roomcast.db")


async def test_engine_settings(engine: AsyncEngine, backend: str) -> None:
    async with engine.connect() as conn:
        if backend == "sqlite":
            assert engine.dialect.driver == "aiosqlite"
            mode = (await conn.execute(text("PRAGMA journal_mode"))).scalar_one()
            assert mode == "wal"  # readers never wait for the writer
            busy = (await conn.execute(text("PRAGMA busy_timeout"))).scalar_one()
            assert busy == 5000
        else:
            assert engine.dialect.driver == "asyncpg"
            assert (await conn.execute(text("SELECT 1"))).scalar_one() == 1


async def test_a_driverless_url_works_end_to_end(migrated_url: str) -> None:
    plain = migrated_url.replace("+aiosqlite", "").replace("+asyncpg", "")
    engine = create_engine(plain)
    try:
        assert await MessageStore(engine).ping()
    finally:
        await engine.dispose()


async def test_the_session_factory_sees_the_same_tables(
    engine: AsyncEngine, store: MessageStore
) -> None:
    await store.create_room("orm", persist=True, history_size=5)
    async with session_factory(engine)() as session:
        room = await session.get(RoomRecord, "orm")
    assert room is not None
    assert (room.persist, room.history_size, room.presence) == (True, 5, True)
