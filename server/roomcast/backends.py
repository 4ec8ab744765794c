"""The services the settings name: the broker (:func:`make_broker`) and the database
engine (:func:`make_engine`), built without I/O.

Both refuse a URL they cannot use with :class:`~roomcast.settings.SettingsError`
naming the setting (never quoting the URL: it may hold a password). Redis and
SQLAlchemy are imported only when asked for, so ``roomcast serve`` can check the
services before it imports the web stack (startup.py).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .hub.broker import Broker
from .hub.memory import MemoryBroker
from .settings import Settings, SettingsError

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine

__all__ = ["make_broker", "make_engine"]


def make_broker(settings: Settings) -> Broker:
    """The broker the settings ask for: memory by default, Redis with a URL (or sentinels)."""
    if settings.redis_url:
        from .hub.redis import RedisBroker

        problem = RedisBroker.url_problem(settings.redis_url.get_secret_value())
        if problem is not None:
            raise SettingsError(f"ROOMCAST_REDIS_URL: {problem}")
        return RedisBroker(
            settings.redis_url.get_secret_value(),
            history_size=settings.history_size,
            room_ttl=settings.room_ttl,
            presence_ttl=settings.presence_ttl,
            presence_refresh=settings.presence_refresh,
            prefix=settings.redis_prefix,
            sharded=settings.redis_sharded,
            cluster=settings.redis_cluster,
            timeout=settings.redis_timeout,
            ping_interval=settings.redis_ping_interval,
            backoff_cap=settings.redis_backoff_cap,
            max_batch=settings.redis_max_batch,
            idempotency_window=settings.idempotency_window,
            sentinels=settings.sentinel_addresses(),
            sentinel_service=settings.redis_sentinel_service,
            sentinel_password=(
                settings.redis_sentinel_password.get_secret_value()
                if settings.redis_sentinel_password
                else None
            ),
        )
    return MemoryBroker(
        history_size=settings.history_size,
        room_ttl=settings.room_ttl,
        max_rooms=settings.max_rooms,
        max_history_bytes=settings.max_history_bytes,
        idempotency_window=settings.idempotency_window,
        max_idempotency_keys=settings.max_idempotency_keys,
    )


def make_engine(settings: Settings) -> AsyncEngine:
    """The async engine of ``database_url`` (db/engine.py), waiting at most
    ``database_timeout`` to connect (and, on SQLite, for a lock). The caller disposes it."""
    from .db.engine import UnusableDatabaseURL, create_engine

    timeout = settings.database_timeout
    try:
        return create_engine(
            settings.database_url.get_secret_value(),
            connect_timeout=timeout,
            busy_timeout=timeout,
        )
    except UnusableDatabaseURL as exc:
        raise SettingsError(f"ROOMCAST_DATABASE_URL: {exc}") from None
