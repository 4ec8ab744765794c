"""Liveness and readiness probes."""

from __future__ import annotations

from fastapi import APIRouter, Response, status
from pydantic import BaseModel

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
            "description": "the broker or database is unreachable, or the process is draining",
        }
    },
)
async def readyz(rc: RoomcastDep, response: Response) -> Readiness:
    """Ready to serve: broker and database reachable, and not draining."""
    database = rc.writer.healthy and await rc.store.ping()
    ready = rc.hub.broker.ready and database and not rc.hub.draining
    if not ready:
        response.status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    return Readiness(
        status="ok" if ready else "unavailable",
        broker=rc.hub.broker.ready,
        database=database,
        draining=rc.hub.draining,
        connections=rc.hub.connections,
    )
