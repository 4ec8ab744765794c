"""``GET /admin/overview``: what the admin page (web/admin.js) shows of this process.

Who may ask, and when it exists (docs/client.md, "Admin page"):

* an administrator: an API key (``Authorization: Bearer`` or ``X-API-Key``), a
  token with ``"admin": true`` (``auth=jwt``), or a principal the application's
  ``authenticate`` made with ``admin=True``; others get 401 or 403;
* with ``auth=off`` the routes exist only when the server listens on a loopback
  address (``host``), so that nobody else can reach them; there a request
  without a key is an administrator, as on every other REST route, unless
  ``api_keys`` are set, or it came through a proxy (``Forwarded`` or
  ``X-Forwarded-For``: then 403, a key is needed);
* the ``admin`` setting turns both the page and this route off.

The numbers are this process's, like ``/stats`` and ``/metrics``: with several
workers each request is answered by one of them (``node``, ``pid``).
"""

from __future__ import annotations

import asyncio
import heapq
import ipaddress
import os
import time
from collections import Counter
from typing import TYPE_CHECKING, Annotated

from fastapi import APIRouter, HTTPException, Query, Request, status

from ..hub.broker import Unavailable
from ..hub.incidents import INCIDENTS
from ..hub.stats import STATS
from .admin_schemas import (
    AdminOverview,
    Counters,
    EvictionOut,
    HealthOut,
    LoggedErrorOut,
    MemberOut,
    PresenceOut,
    RoomRow,
)
from .deps import RoomcastDep
from .security import AUTH_ERRORS, Caller, denied

if TYPE_CHECKING:
    from ..app import Roomcast
    from ..auth import Authority
    from ..settings import Settings

__all__ = ["available", "router"]

router = APIRouter(tags=["admin"])

STARTED = time.time()
MAX_MEMBERS = 20
"""Users listed per room's presence (the count covers all of them)."""
INCIDENTS_SHOWN = 50


def is_loopback(host: str) -> bool:
    """Whether ``host`` (the address the server binds) is reachable only from this machine."""
    if host.strip("[]").lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def available(settings: Settings, authority: Authority) -> bool:
    """Whether the admin page and its API exist in this runtime (see above)."""
    if not settings.admin:
        return False
    return authority.required or is_loopback(settings.host)


def _check_proxied(request: Request) -> None:
    """With ``auth=off`` and no API keys every caller is an administrator: keep that to
    requests made on this machine, not relayed by a proxy in front of it."""
    headers = request.headers
    if "forwarded" in headers or "x-forwarded-for" in headers:
        raise HTTPException(
            status.HTTP_403_FORBIDDEN,
            "without credentials the admin page answers only requests made on the server's "
            "machine, not through a proxy: set ROOMCAST_API_KEYS and sign in with a key",
        )


def _database_kind(url: str) -> str:
    scheme = url.partition("://")[0] if "://" in url else url.partition(":")[0]
    return scheme.partition("+")[0] or "unknown"


async def _health(rc: Roomcast) -> HealthOut:
    broker = rc.hub.broker
    database = rc.writer.healthy and await rc.store.ping()
    settings = rc.settings
    return HealthOut(
        ready=broker.ready and database and not rc.hub.draining,
        broker=broker.ready,
        broker_kind="redis" if settings.redis_url or settings.redis_sentinels else "memory",
        degraded=[shard.node for shard in broker.shards() if not shard.up],
        broker_reconnects=broker.reconnects,
        database=database,
        database_kind=_database_kind(settings.database_url.get_secret_value()),
        draining=rc.hub.draining,
        presence=rc.hub.presence_enabled,
    )


def _totals(rc: Roomcast) -> Counters:
    websockets, sse, subscriptions, rooms = rc.hub.census()
    return Counters(
        connections=websockets + sse,
        websockets=websockets,
        sse_streams=sse,
        subscriptions=subscriptions,
        rooms=rooms,
        published=STATS.published,
        delivered=STATS.delivered,
        replayed=STATS.replayed,
        evictions=dict(STATS.evictions),
        latency_sum=STATS.latency_sum,
        latency_count=STATS.latency_count,
    )


async def _presence(rc: Roomcast, room: str) -> PresenceOut | None:
    if not rc.hub.presence_enabled:
        return None
    try:
        entries = await rc.hub.presence(room)
    except Unavailable:
        return None
    users = Counter(entry.user for entry in entries)
    members = [MemberOut(user=u, connections=n) for u, n in users.most_common(MAX_MEMBERS)]
    return PresenceOut(connections=len(entries), members=members)


async def _rooms(rc: Roomcast, limit: int, match: str | None) -> tuple[list[RoomRow], int]:
    census = [
        entry
        for entry in rc.hub.room_census()
        if match is None or match.lower() in entry[0].lower()
    ]
    busiest = heapq.nsmallest(limit, census, key=lambda e: (-(e[1] + e[2]), e[0]))
    presence = await asyncio.gather(*(_presence(rc, room) for room, _, _ in busiest))
    rows = []
    for (room, websockets, sse), members in zip(busiest, presence, strict=True):
        position = rc.hub.broker.live_position(room)
        rows.append(
            RoomRow(
                room=room,
                subscribers=websockets + sse,
                websockets=websockets,
                sse_streams=sse,
                epoch=None if position is None else position.epoch,
                offset=None if position is None else position.offset,
                presence=members,
            )
        )
    return rows, len(census)


@router.get("/admin/overview", response_model=AdminOverview, responses=AUTH_ERRORS)
async def overview(
    request: Request,
    rc: RoomcastDep,
    caller: Caller,
    limit: Annotated[int, Query(ge=1, le=500, description="rooms listed at most")] = 50,
    match: Annotated[
        str | None, Query(min_length=1, max_length=128, description="rooms whose name has this")
    ] = None,
) -> AdminOverview:
    """This process's health, counters, busiest rooms (subscribers, position, presence)
    and latest evictions and errors: what the admin page shows. Admin only."""
    if not caller.admin:
        raise denied(caller, "read the admin overview")
    if caller.anonymous:
        _check_proxied(request)
    rooms, total = await _rooms(rc, limit, match)
    evictions = INCIDENTS.recent_evictions(INCIDENTS_SHOWN)
    errors = INCIDENTS.recent_errors(INCIDENTS_SHOWN)
    return AdminOverview(
        node=rc.stats().node,
        pid=os.getpid(),
        started=STARTED,
        now=time.time(),
        health=await _health(rc),
        totals=_totals(rc),
        rooms=rooms,
        rooms_total=total,
        evictions=[
            EvictionOut(
                ts=e.ts,
                reason=e.reason,
                conn=e.conn,
                user=e.user,
                name=e.name,
                transport=e.transport,
                rooms=list(e.rooms),
                room_count=e.room_count,
            )
            for e in evictions
        ],
        errors=[
            LoggedErrorOut(ts=e.ts, level=e.level, logger=e.logger, message=e.message)
            for e in errors
        ],
    )
