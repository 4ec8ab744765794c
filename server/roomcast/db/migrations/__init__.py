"""Alembic migrations for roomcast's tables (run them with roomcast.db.migrate.upgrade)."""
