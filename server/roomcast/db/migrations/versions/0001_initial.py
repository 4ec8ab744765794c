"""Rooms and messages.

Revision ID: 0001
Revises:
Create Date: 2026-05-20
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "rooms",
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("persist", sa.Boolean(), nullable=False),
        sa.Column("history_size", sa.Integer(), nullable=True),
        sa.Column("presence", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("name", name="pk_rooms"),
    )
    op.create_table(
        "messages",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("room", sa.String(length=128), nullable=False),
        sa.Column("epoch", sa.String(), nullable=False),
        sa.Column("offset", sa.BigInteger(), nullable=False),
        sa.Column("sender", sa.String(), nullable=False),
        # json on PostgreSQL; TEXT on SQLite, whose JSON columns would be NUMERIC.
        sa.Column("data", sa.JSON().with_variant(sa.Text(), "sqlite"), nullable=False),
        sa.Column("ts", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_messages"),
        sa.UniqueConstraint("room", "epoch", "offset", name="uq_messages_room_epoch_offset"),
    )
    op.create_index("ix_messages_room_id", "messages", ["room", "id"])


def downgrade() -> None:
    op.drop_index("ix_messages_room_id", table_name="messages")
    op.drop_table("messages")
    op.drop_table("rooms")
