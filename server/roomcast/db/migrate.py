"""Schema migrations: ``alembic upgrade`` in code, with no alembic.ini needed.

:func:`upgrade` is what ``roomcast db upgrade`` runs; :func:`upgrade_async`
does the same from inside a running event loop (an app's lifespan, a test).
Both are idempotent: on a database that is already at ``head`` they do nothing.

The revisions live in ``db/migrations/versions``; alembic.ini beside this
module is only for developers who run the ``alembic`` CLI to write new ones.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

from .engine import create_engine
from .store import is_outage, unavailable

__all__ = ["MIGRATIONS", "alembic_config", "head_revision", "upgrade", "upgrade_async"]

MIGRATIONS = Path(__file__).resolve().parent / "migrations"


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
    config = alembic_config(engine.url.render_as_string(hide_password=False))

    def run_upgrade(connection: Connection) -> None:
        config.attributes["connection"] = connection
        command.upgrade(config, revision)

    try:
        async with engine.begin() as connection:
            await connection.run_sync(run_upgrade)
    except Exception as error:
        if is_outage(error):
            raise unavailable(error) from error
        raise
