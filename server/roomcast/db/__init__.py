"""Persistence: rooms and persisted messages in SQL (the only SQLModel/SQLAlchemy user).

* :mod:`.models` — the ``rooms`` and ``messages`` tables;
* :mod:`.engine` — :func:`create_engine` (SQLite file by default, PostgreSQL via
  asyncpg) and :func:`session_factory`;
* :mod:`.migrate` — :func:`upgrade` / :func:`upgrade_async` (Alembic, in code);
* :mod:`.store` — :class:`MessageStore`, explicit SQL for rooms and messages;
* :mod:`.writer` — :class:`BatchedWriter`, group commit off the fan-out path.

Every outage surfaces as :class:`DatabaseUnavailable` (tree in :mod:`.store`).

The names are loaded on first use, so importing :mod:`.engine` alone (the startup
check of ``roomcast serve``, startup.py) does not import Alembic and SQLModel.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
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

_WHERE = {
    "DEFAULT_URL": "engine",
    "create_engine": "engine",
    "normalize_url": "engine",
    "session_factory": "engine",
    "head_revision": "migrate",
    "upgrade": "migrate",
    "upgrade_async": "migrate",
    "MessageRecord": "models",
    "RoomRecord": "models",
    "DatabaseUnavailable": "store",
    "MessageStore": "store",
    "RoomExists": "store",
    "BatchedWriter": "writer",
    "WriterClosed": "writer",
    "WriterOverloaded": "writer",
}


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value
