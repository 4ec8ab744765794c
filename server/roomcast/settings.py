"""All of roomcast's settings, in one class. Environment prefix: ``ROOMCAST_``.

Every operator limit the server enforces is a named setting here (the few
fixed limits of the wire protocol are constants in protocol/frames.py);
docs/operations.md
lists them. CLI flags of ``roomcast serve`` override the environment.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["Settings"]

Positive = Annotated[float, Field(gt=0)]
Count = Annotated[int, Field(ge=1)]


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="ROOMCAST_", extra="ignore")

    # -- serving -------------------------------------------------------------------
    host: str = "127.0.0.1"
    port: Annotated[int, Field(ge=0, le=65535)] = 8000
    workers: Count = 1
    log_level: Literal["critical", "error", "warning", "info", "debug", "trace"] = "info"
    graceful_shutdown_timeout: Positive = 10.0
    """Seconds uvicorn waits for connections and tasks to finish on shutdown."""
    drain_timeout: Positive = 5.0
    """Seconds to wait for sockets to take their 3000 close before uvicorn's own shutdown."""

    # -- WebSocket -----------------------------------------------------------------
    ws_max_size: Count = 128 * 1024
    """Largest incoming frame in bytes; a larger one closes the connection with 1009."""
    ws_ping_interval: Positive = 20.0
    ws_ping_timeout: Positive = 20.0
    """A peer that does not answer a WebSocket ping within this many seconds is dropped."""
    ws_per_message_deflate: bool = False

    # -- Server-Sent Events --------------------------------------------------------
    sse_keepalive: Positive = 15.0
    """Seconds between keep-alive comments on an idle event stream."""
    sse_retry_ms: Count = 2000
    """The ``retry:`` hint: milliseconds EventSource waits before reconnecting."""

    # -- per connection ------------------------------------------------------------
    outbox_max_messages: Count = 1000
    outbox_max_bytes: Count = 4 * 1024 * 1024
    """A connection whose outbox exceeds either bound is closed 3001 (slow consumer).
    Sizes are counted in characters of the encoded frames (bytes, for ASCII)."""
    send_timeout: Positive = 10.0
    """A connection whose writer makes no progress on one frame for this long is
    closed 3001 (slow consumer), even when no new traffic fills its outbox."""
    slow_close_timeout: Positive = 5.0
    """Seconds the server tries to deliver a close frame (to a peer that may have
    stopped reading) before it releases the connection anyway."""
    max_payload_bytes: Count = 64 * 1024
    """Largest ``data`` of one publish, encoded as JSON; larger gets ``too_large``."""
    max_subscriptions: Count = 100
    max_bad_frames: Count = 20
    """Malformed frames a connection may send before it is closed with 3502."""

    # -- rooms and history ------------------------------------------------------------
    history_size: Count = 1000
    """Events kept per room for resume and history (memory and Redis brokers)."""
    room_ttl: Positive = 3600.0
    """Seconds an unused room's history is kept once nobody is subscribed."""
    presence: bool = True
    presence_ttl: Positive = 30.0
    """Seconds a presence entry lives unless its process refreshes it (Redis broker):
    a crashed worker's users leave within this time."""
    presence_refresh: Positive = 10.0
    """Seconds between a process's presence refreshes and expiry sweeps (Redis broker)."""

    # -- persistence (rooms created with persist keep their messages in SQL) ---------
    database_url: str = "sqlite+aiosqlite:///roomcast.db"
    """SQLAlchemy URL: a SQLite file by default; ``postgresql+asyncpg://...`` for PostgreSQL."""
    database_migrate: bool = True
    """Bring the schema up to date at startup (``roomcast db upgrade`` does it by hand)."""
    database_timeout: Positive = 5.0
    """Seconds to wait for the database (connect, statement) before ``unavailable``."""
    writer_max_pending: Count = 10_000
    """Events waiting to be written; a publish to a persisted room beyond it gets
    ``unavailable``."""
    writer_max_batch: Count = 500
    """Most events written in one transaction (group commit)."""
    writer_max_delay: Annotated[float, Field(ge=0)] = 0.005
    """Seconds the writer waits for more events before committing a batch."""
    room_options_ttl: Positive = 5.0
    """Seconds a process caches a room's options (persist, presence), so rooms created
    or deleted on another process take effect within this time."""
    replay_limit: Count = 10_000
    """Most events a resume reads from SQL when its gap is older than the broker's history."""

    # -- services ------------------------------------------------------------------
    redis_url: str | None = None
    """Set to use the Redis broker (several workers or machines); unset: memory broker."""
    redis_prefix: str = "rc"
    """Prefix of every Redis key and channel, so deployments can share a Redis."""
    redis_sharded: bool = False
    """Use sharded pub/sub (SSUBSCRIBE/SPUBLISH, Redis 7+)."""
    redis_cluster: bool = False
    """ROOMCAST_REDIS_URL names a node of a Redis Cluster: commands go through the
    cluster client and pub/sub is sharded, one connection per shard in use."""
    redis_timeout: Positive = 5.0
    """Seconds to wait for Redis (connect, command, subscribe confirmation)."""
    redis_ping_interval: Positive = 5.0
    """Seconds of pub/sub silence before a PING; no answer within as long again
    counts as a lost connection."""
    redis_backoff_cap: Positive = 2.0
    """Longest wait, in seconds, between pub/sub reconnect attempts (full jitter)."""
