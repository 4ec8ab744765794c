"""Schema migrations: ``alembic upgrade`` in code, with no alembic.ini needed.

:func:`upgrade` is what ``roomcast db upgrade`` runs; :func:`upgrade_async`
does the same from inside a running event loop (an app's lifespan, a test).
Both are idempotent: on a database that is already at ``head`` they do nothing.

Several processes may migrate one database at once (``roomcast serve --workers
N`` on a fresh database, replicas starting together). On PostgreSQL the
migration holds a transaction-scoped advisory lock, so they take turns; on
SQLite the loser of the race fails on a table the winner created, and a
failed upgrade to ``head`` that sees the database reach ``head`` within
``CONCURRENT_MIGRATION_WAIT`` seconds counts as done.

The revisions live in ``db/migrations/versions``; alembic.ini beside this
module is only for developers who run the ``alembic`` CLI to write new ones.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

from .engine import create_engine
from .store import is_outage, unavailable

__all__ = ["MIGRATIONS", "alembic_config", "head_revision", "upgrade", "upgrade_async"]

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
MIGRATION_LOCK = 0x726F6F6D63617374
"""The PostgreSQL advisory lock key of roomcast's migrations ("roomcast")."""

CONCURRENT_MIGRATION_WAIT = 10.0
"""Seconds a failed upgrade waits for another process's migration to reach head."""

log = logging.getLogger("roomcast.db")


def alembic_config(url: str | None = None) -> Config:
    """An Alembic Config for roomcast's migrations (URL kept out of configparser,
    so a password with ``%`` in it needs no escaping)."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    if url is not None:
        config.attributes["url"] = url
    return config


def head_revision() -> str | None:
    """The newest revision the code knows."""
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def upgrade(url: str, revision: str = "head") -> None:
    """Migrate the database at ``url`` to ``revision``. Call with no event loop running.

    Raises :class:`~roomcast.db.store.DatabaseUnavailable` when the database
    cannot be reached.
    """
    asyncio.run(upgrade_async(url, revision))


async def upgrade_async(url_or_engine: str | AsyncEngine, revision: str = "head") -> None:
    """:func:`upgrade` from inside a running event loop (one transaction on PostgreSQL).

    Given an engine, it uses it and leaves it open; given a URL, it makes its
    own engine and disposes it.
    """
    if isinstance(url_or_engine, AsyncEngine):
        await _run(url_or_engine, revision)
        return
    engine = create_engine(url_or_engine)
    try:
        await _run(engine, revision)
    finally:
        await engine.dispose()


async def _run(engine: AsyncEngine, revision: str) -> None:
    try:
        await _migrate(engine, revision)
    except Exception as error:
        if revision == "head" and await _reaches_head(engine, CONCURRENT_MIGRATION_WAIT):
            log.info("the schema was brought to head by another process meanwhile")
            return
        if is_outage(error):
            raise unavailable(error) from error
        raise


async def _migrate(engine: AsyncEngine, revision: str) -> None:
    config = alembic_config(engine.url.render_as_string(hide_password=False))

    def run_upgrade(connection: Connection) -> None:
        config.attributes["connection"] = connection
        command.upgrade(config, revision)

    async with engine.begin() as connection:
        if connection.dialect.name == "postgresql":  # one migrating process at a time
            await connection.execute(
                text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK}
            )
        await connection.run_sync(run_upgrade)


async def _reaches_head(engine: AsyncEngine, timeout: float) -> bool:
    """Whether the database gets to the newest revision within ``timeout`` seconds:
    pysqlite runs DDL outside the transaction, so another process's migration may be
    half visible (its tables made, its version not yet written) when ours fails.
    False at once when the database cannot be read."""
    deadline = asyncio.get_running_loop().time() + timeout
    head = head_revision()
    while True:
        try:
            current = await _current_revision(engine)
        except Exception:
            return False
        if current == head:
            return True
        if asyncio.get_running_loop().time() >= deadline:
            return False
        await asyncio.sleep(0.05)


async def _current_revision(engine: AsyncEngine) -> str | None:
    def current(connection: Connection) -> str | None:
        return MigrationContext.configure(connection).get_current_revision()

    async with engine.connect() as connection:
        return await connection.run_sync(current)
