"""Alembic migrations: ``upgrade`` builds the schema the models describe."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect
from sqlalchemy.engine import Connection

from roomcast.db.engine import create_engine
from roomcast.db.migrate import head_revision, upgrade, upgrade_async
from roomcast.db.models import metadata
from roomcast.db.store import DatabaseUnavailable

from ..postgres_server import PostgresServer


async def run_sync_on(url: str, fn: Any) -> Any:
    engine = create_engine(url)
    try:
        async with engine.connect() as conn:
            return await conn.run_sync(fn)
    finally:
        await engine.dispose()


def describe(conn: Connection) -> dict[str, Any]:
    inspector = inspect(conn)
    tables = set(inspector.get_table_names())
    return {
        "tables": tables,
        "rooms": {c["name"]: c for c in inspector.get_columns("rooms")}
        if "rooms" in tables
        else {},
        "messages": (
            {c["name"]: c for c in inspector.get_columns("messages")}
            if "messages" in tables
            else {}
        ),
        "unique": (
            [tuple(u["column_names"]) for u in inspector.get_unique_constraints("messages")]
            if "messages" in tables
            else []
        ),
        "indexes": (
            {i["name"]: tuple(i["column_names"]) for i in inspector.get_indexes("messages")}
            if "messages" in tables
            else {}
        ),
        "rooms_pk": inspector.get_pk_constraint("rooms")["constrained_columns"]
        if "rooms" in tables
        else [],
        "messages_pk": inspector.get_pk_constraint("messages")["constrained_columns"]
        if "messages" in tables
        else [],
    }


def current_revision(conn: Connection) -> str | None:
    return MigrationContext.configure(conn).get_current_revision()


def schema_diff(conn: Connection) -> list[Any]:
    return list(compare_metadata(MigrationContext.configure(conn), metadata))


async def test_upgrade_creates_both_tables_with_their_keys_and_indexes(db_url: str) -> None:
    before = await run_sync_on(db_url, describe)
    assert not {"rooms", "messages"} & before["tables"]

    await upgrade_async(db_url)

    schema = await run_sync_on(db_url, describe)
    assert {"rooms", "messages", "alembic_version"} <= schema["tables"]
    assert set(schema["rooms"]) == {"name", "persist", "history_size", "presence", "created_at"}
    assert set(schema["messages"]) == {"id", "room", "epoch", "offset", "sender", "data", "ts"}
    assert schema["rooms_pk"] == ["name"]
    assert schema["messages_pk"] == ["id"]
    assert schema["rooms"]["history_size"]["nullable"] is True
    assert schema["rooms"]["persist"]["nullable"] is False
    assert schema["messages"]["data"]["nullable"] is False
    assert ("room", "epoch", "offset") in schema["unique"]
    assert schema["indexes"]["ix_messages_room_id"] == ("room", "id")
    assert await run_sync_on(db_url, current_revision) == head_revision()


async def test_the_migrations_match_the_models(migrated_url: str) -> None:
    assert await run_sync_on(migrated_url, schema_diff) == []


async def test_upgrade_twice_is_a_no_op(migrated_url: str) -> None:
    await upgrade_async(migrated_url)
    assert await run_sync_on(migrated_url, current_revision) == head_revision()


async def test_upgrade_accepts_an_engine_and_leaves_it_open(db_url: str) -> None:
    engine = create_engine(db_url)
    try:
        await upgrade_async(engine)
        async with engine.connect() as conn:
            assert await conn.run_sync(current_revision) == head_revision()
    finally:
        await engine.dispose()


async def test_the_sync_upgrade_runs_like_the_cli_would(db_url: str) -> None:
    # `roomcast db upgrade` calls upgrade() with no event loop running: a thread here.
    await asyncio.to_thread(upgrade, db_url)
    assert await run_sync_on(db_url, current_revision) == head_revision()


async def test_upgrade_of_an_unreachable_database_raises_database_unavailable(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    if backend == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path / 'missing' / 'roomcast.db'}"
    else:
        server: PostgresServer = request.getfixturevalue("own_postgres")
        url = server.url(server.create_database())
        server.stop("immediate")
    with pytest.raises(DatabaseUnavailable):
        await asyncio.wait_for(upgrade_async(url), 20)


async def test_processes_upgrading_a_fresh_database_at_once_all_succeed(db_url: str) -> None:
    """`roomcast serve --workers N` on a fresh database migrates in every worker at once:
    each must come up, not fail on a table another one just created."""
    import subprocess
    import sys

    def upgrade_together(n: int) -> list[tuple[int, str]]:
        processes = [
            subprocess.Popen(
                [sys.executable, "-m", "roomcast", "db", "upgrade", "--url", db_url],
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
            )
            for _ in range(n)
        ]
        return [(p.wait(60), (p.stdout.read() if p.stdout else b"").decode()) for p in processes]

    results = await asyncio.to_thread(upgrade_together, 4)
    assert [code for code, _ in results] == [0, 0, 0, 0], results
    assert await run_sync_on(db_url, current_revision) == head_revision()
    assert await run_sync_on(db_url, schema_diff) == []
