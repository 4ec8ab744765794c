"""SQL tables: rooms and their persisted messages.

Only ``db/`` imports SQLModel. The models are plain tables with explicit
queries in :mod:`roomcast.db.store`: no relationships, nothing lazy.

``messages`` is written by the batched writer and read in two ways, each
served by one index:

* backwards from the newest message of a room (``ix_messages_room_id``, whose
  leading column also serves every lookup by room);
* forwards or backwards inside one epoch by offset (the unique constraint
  ``uq_messages_room_epoch_offset``, which is what makes a replayed insert a
  no-op).

Changing a table means a new Alembic revision in ``db/migrations/versions``;
``tests/db/test_migrations.py`` fails when the models and the migrations
disagree.
"""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    Dialect,
    Index,
    Integer,
    MetaData,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.orm import registry
from sqlmodel import Field, SQLModel

__all__ = [
    "ROOM_NAME_LENGTH",
    "JSONValue",
    "MessageRecord",
    "RoomRecord",
    "TableBase",
    "metadata",
]

ROOM_NAME_LENGTH = 128

# roomcast's own MetaData, not SQLModel's global one: an application that mounts
# roomcast and has SQLModel tables of its own never creates or migrates ours by
# accident, and our migrations never see theirs.
metadata = MetaData(
    naming_convention={
        "pk": "pk_%(table_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_N_name)s_%(referred_table_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
    }
)


class SQLiteJSONText(TypeDecorator[Any]):
    """A JSON value stored as TEXT, for SQLite.

    SQLite gives a column declared ``JSON`` NUMERIC affinity, so a payload
    that is a bare number is converted on the way in: ``1.0`` comes back as
    the integer ``1``, a 20-digit integer as a float. With TEXT affinity the
    stored text is exactly what was written. Serialized with the engine's
    JSON functions, like the JSON type.
    """

    impl = Text
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Dialect) -> str:
        serialize = getattr(dialect, "_json_serializer", None) or json.dumps
        return str(serialize(value))

    def process_result_value(self, value: Any, dialect: Dialect) -> Any:
        if value is None:
            return None
        deserialize = getattr(dialect, "_json_deserializer", None) or json.loads
        return deserialize(value)


#: Any JSON value: ``json`` on PostgreSQL (text kept as written, unlike ``jsonb``),
#: TEXT on SQLite (see :class:`SQLiteJSONText`).
JSONValue = JSON(none_as_null=False).with_variant(SQLiteJSONText(), "sqlite")


class TableBase(SQLModel, registry=registry(metadata=metadata)):
    """Base of roomcast's tables (abstract): binds them to :data:`metadata`."""


class RoomRecord(TableBase, table=True):
    """A room created through the API, with its options."""

    __tablename__ = "rooms"

    name: str = Field(primary_key=True, max_length=ROOM_NAME_LENGTH)
    persist: bool = False
    history_size: int | None = None
    presence: bool = True
    created_at: float


class MessageRecord(TableBase, table=True):
    """One persisted event: its room, position, sender, JSON payload and time.

    ``data`` holds any JSON value (object, array, string, number, bool or
    null), as :data:`JSONValue`.
    """

    __tablename__ = "messages"
    __table_args__ = (
        UniqueConstraint("room", "epoch", "offset", name="uq_messages_room_epoch_offset"),
        Index("ix_messages_room_id", "room", "id"),
    )

    id: int | None = Field(
        default=None,
        sa_column=Column(
            # BIGSERIAL on PostgreSQL; on SQLite only INTEGER is a rowid alias.
            BigInteger().with_variant(Integer(), "sqlite"),
            primary_key=True,
            autoincrement=True,
        ),
    )
    room: str = Field(max_length=ROOM_NAME_LENGTH)
    epoch: str
    offset: int = Field(sa_type=BigInteger)
    sender: str
    data: Any = Field(sa_column=Column(JSONValue, nullable=False))
    ts: float
