"""Liveness and readiness probes."""

from __future__ import annotations

from fastapi import APIRouter, Response, status
from pydantic import BaseModel, Field

from .deps import RoomcastDep

__all__ = ["router"]

router = APIRouter(tags=["health"])


class Health(BaseModel):
    status: str


class Readiness(BaseModel):
    status: str
    broker: bool
    database: bool
    draining: bool
    connections: int
    degraded: list[str] = Field(
        default_factory=list,
        description="Broker shards this process cannot serve now (Redis: `main`, or a "
        "cluster node's `host:port`); their rooms answer `unavailable`, the others serve.",
    )


@router.get("/healthz", response_model=Health)
async def healthz() -> Health:
    """The process is alive and serving HTTP."""
    return Health(status="ok")


@router.get(
    "/readyz",
    response_model=Readiness,
    responses={
        503: {
            "model": Readiness,
            "description": "the broker serves no shard, the database is unreachable, "
            "or the process is draining",
        }
    },
)
async def readyz(rc: RoomcastDep, response: Response) -> Readiness:
    """Ready to serve: the broker serves some shard (``degraded`` names those it
    cannot: their rooms answer ``unavailable`` while the rest serve, so a load
    balancer keeps this process), the database is reachable, and not draining."""
    database = rc.writer.healthy and await rc.store.ping()
    broker = rc.hub.broker
    degraded = [shard.node for shard in broker.shards() if not shard.up]
    broker_ready = broker.ready
    ready = broker_ready and database and not rc.hub.draining
    if not ready:
        response.status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    return Readiness(
        status="ok" if ready else "unavailable",
        broker=broker_ready,
        database=database,
        draining=rc.hub.draining,
        connections=rc.hub.connections,
        degraded=degraded,
    )
