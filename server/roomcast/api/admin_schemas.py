"""The body of ``GET /admin/overview`` (api/admin.py): this process at a glance."""

from __future__ import annotations

from pydantic import BaseModel, Field

__all__ = [
    "AdminOverview",
    "Counters",
    "EvictionOut",
    "HealthOut",
    "LoggedErrorOut",
    "MemberOut",
    "PresenceOut",
    "RoomRow",
]


class HealthOut(BaseModel):
    ready: bool = Field(
        description="as /readyz: the broker serves, the database answers, not draining"
    )
    broker: bool
    broker_kind: str = Field(description="`memory` or `redis`")
    degraded: list[str] = Field(description="broker shards this process cannot serve now")
    broker_reconnects: int
    database: bool
    database_kind: str = Field(description="`sqlite` or `postgresql` (no address or password)")
    draining: bool
    presence: bool = Field(description="presence is tracked (the `presence` setting)")


class Counters(BaseModel):
    """Gauges now and counters since the process started, as /metrics has them."""

    connections: int
    websockets: int
    sse_streams: int
    subscriptions: int
    rooms: int = Field(description="rooms with a subscriber on this process")
    published: int = Field(description="messages this process published")
    delivered: int = Field(description="messages and notices queued to this process's connections")
    replayed: int = Field(description="events queued by resumes' replays")
    evictions: dict[str, int] = Field(description="slow-consumer closes by reason")
    latency_sum: float = Field(description="seconds from publish to fan-out, summed")
    latency_count: int


class MemberOut(BaseModel):
    user: str = Field(description="the name presence shows")
    connections: int


class PresenceOut(BaseModel):
    connections: int = Field(description="presence entries on every process")
    members: list[MemberOut] = Field(description="by user, the most connections first (bounded)")


class RoomRow(BaseModel):
    room: str
    subscribers: int = Field(description="live subscribers on this process")
    websockets: int
    sse_streams: int
    epoch: str | None = Field(description="the room's stream; null before its first event here")
    offset: int | None = Field(
        description="the last offset this process delivered: every publish in the room, "
        "on any process, adds one (the page derives message rates from it)"
    )
    presence: PresenceOut | None = Field(
        description="null when presence is off or the broker could not be asked"
    )


class EvictionOut(BaseModel):
    ts: float
    reason: str = Field(description="`outbox_full`, `send_timeout` or `shutdown`")
    conn: str
    user: str = Field(description="the user id")
    name: str = Field(description="the name it was shown as")
    transport: str
    rooms: list[str] = Field(description="its rooms (the first few, by name)")
    room_count: int


class LoggedErrorOut(BaseModel):
    ts: float
    level: str
    logger: str
    message: str


class AdminOverview(BaseModel):
    node: str = Field(description="this process (each worker answers for itself)")
    pid: int
    started: float = Field(description="Unix time this process loaded roomcast")
    now: float
    health: HealthOut
    totals: Counters
    rooms: list[RoomRow] = Field(description="rooms with subscribers here, busiest first")
    rooms_total: int = Field(description="rooms that matched, shown or not")
    evictions: list[EvictionOut] = Field(description="the latest evictions, newest first")
    errors: list[LoggedErrorOut] = Field(
        description="the latest WARNING and ERROR log lines of roomcast, newest first"
    )
