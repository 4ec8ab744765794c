"""Persistence: rooms and persisted messages in SQL (the only SQLModel/SQLAlchemy user).

* :mod:`.models` — the ``rooms`` and ``messages`` tables;
* :mod:`.engine` — :func:`create_engine` (SQLite file by default, PostgreSQL via
  asyncpg) and :func:`session_factory`;
* :mod:`.migrate` — :func:`upgrade` / :func:`upgrade_async` (Alembic, in code);
* :mod:`.store` — :class:`MessageStore`, explicit SQL for rooms and messages;
* :mod:`.writer` — :class:`BatchedWriter`, group commit off the fan-out path.

Every outage surfaces as :class:`DatabaseUnavailable` (tree in :mod:`.store`).
"""

from .engine import DEFAULT_URL, create_engine, normalize_url, session_factory
from .migrate import head_revision, upgrade, upgrade_async
from .models import MessageRecord, RoomRecord
from .store import DatabaseUnavailable, MessageStore, RoomExists
from .writer import BatchedWriter, WriterClosed, WriterOverloaded

__all__ = [
    "DEFAULT_URL",
    "BatchedWriter",
    "DatabaseUnavailable",
    "MessageRecord",
    "MessageStore",
    "RoomExists",
    "RoomRecord",
    "WriterClosed",
    "WriterOverloaded",
    "create_engine",
    "head_revision",
    "normalize_url",
    "session_factory",
    "upgrade",
    "upgrade_async",
]
