"""Annotated dependency aliases shared by the routers."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, cast

from fastapi import Depends
from starlette.requests import HTTPConnection

if TYPE_CHECKING:
    from ..app import Roomcast

__all__ = ["RoomcastDep", "get_roomcast"]


def get_roomcast(conn: HTTPConnection) -> Roomcast:
    """The Roomcast runtime the app's lifespan stored on ``app.state``."""
    return cast("Roomcast", conn.app.state.roomcast)


RoomcastDep = Annotated["Roomcast", Depends(get_roomcast)]
