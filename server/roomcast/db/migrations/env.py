"""Alembic environment for roomcast: async engines, URL from the caller.

Where the database comes from, first match wins:

1. ``config.attributes["connection"]``: a sync Connection handed over by
   :func:`roomcast.db.migrate.upgrade_async` (inside ``run_sync``);
2. ``config.attributes["url"]``, set by :mod:`roomcast.db.migrate`;
3. ``sqlalchemy.url`` from an alembic.ini, the ``ROOMCAST_DATABASE_URL``
   environment variable, or the default SQLite file, for the ``alembic`` CLI
   (``alembic -c server/roomcast/db/alembic.ini revision --autogenerate -m ...``).
"""

from __future__ import annotations

import asyncio
import os
from logging.config import fileConfig

from alembic import context
from sqlalchemy.engine import Connection

from roomcast.db.engine import DEFAULT_URL, create_engine, normalize_url
from roomcast.db.models import metadata

config = context.config

if config.config_file_name is not None and config.attributes.get("configure_logger", True):
    fileConfig(config.config_file_name, disable_existing_loggers=False)


def database_url() -> str:
    url = config.attributes.get("url") or config.get_main_option("sqlalchemy.url")
    return str(url or os.environ.get("ROOMCAST_DATABASE_URL") or DEFAULT_URL)


def run_migrations_offline() -> None:
    """Emit the SQL to stdout instead of running it (``alembic upgrade --sql``)."""
    url = normalize_url(database_url())
    context.configure(
        url=url,
        target_metadata=metadata,
        literal_binds=True,
        dialect_opts={"paramstyle": "named"},
        render_as_batch=url.get_backend_name() == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()


def do_run_migrations(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()


async def run_async_migrations() -> None:
    engine = create_engine(database_url())
    try:
        async with engine.connect() as connection:
            await connection.run_sync(do_run_migrations)
            await connection.commit()
    finally:
        await engine.dispose()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        do_run_migrations(connection)
    else:
        asyncio.run(run_async_migrations())


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
