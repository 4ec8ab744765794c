"""A real PostgreSQL server on a free loopback port: now public in roomcast.testing;
re-exported here for the suite's existing imports."""

from __future__ import annotations

from roomcast.testing import PostgresServer, postgres_available, postgres_bin

__all__ = ["PostgresServer", "postgres_available", "postgres_bin"]
