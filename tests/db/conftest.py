"""Fixtures for db/ tests: every test runs on a SQLite file and on a real PostgreSQL.

``postgres_server`` (tests/conftest.py) is one server for the session; each
test gets a fresh database in it, so tests never see each other's rows. A test
that stops or crashes its server uses ``own_postgres`` instead. Missing
PostgreSQL binaries skip the PostgreSQL half locally and fail it in CI.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from roomcast.db.engine import create_engine
from roomcast.db.migrate import upgrade_async
from roomcast.db.store import MessageStore

from ..postgres_server import PostgresServer

BACKENDS = ["sqlite", "postgresql"]


@pytest.fixture(autouse=True)
async def aiosqlite_threads_end() -> AsyncIterator[None]:
    """Let aiosqlite's worker threads finish while the test's loop still runs.

    After a failed connect, aiosqlite (0.22) queues the stop of its worker
    thread without waiting for it; if the loop closes first, the thread's
    callback hits a closed loop and pytest reports an unhandled thread error.
    A long-lived server loop never sees this; a test's short loop can.
    """
    yield
    for thread in threading.enumerate():
        if "_connection_worker_thread" in thread.name:
            await asyncio.to_thread(thread.join, 5)


def sqlite_url(folder: Path) -> str:
    return f"sqlite+aiosqlite:///{folder / 'roomcast.db'}"


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def db_url(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> str:
    """An empty database: a SQLite file in tmp_path, or a new PostgreSQL database."""
    if backend == "sqlite":
        return sqlite_url(tmp_path)
    server: PostgresServer = request.getfixturevalue("postgres_server")
    return server.url(server.create_database())


@pytest.fixture
async def migrated_url(db_url: str) -> str:
    """``db_url`` migrated to head."""
    await upgrade_async(db_url)
    return db_url


@pytest.fixture
async def engine(migrated_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(migrated_url)
    yield engine
    await engine.dispose()


@pytest.fixture
def store(engine: AsyncEngine) -> MessageStore:
    return MessageStore(engine)
