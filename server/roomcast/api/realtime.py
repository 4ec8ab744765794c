"""Real-time routes: WebSocket (and, later, SSE)."""

from __future__ import annotations

from fastapi import APIRouter, WebSocket

from ..transports.websocket import serve_websocket
from .deps import RoomcastDep

__all__ = ["router"]

router = APIRouter()


@router.websocket("/ws")
async def websocket(ws: WebSocket, rc: RoomcastDep) -> None:
    """The protocol of docs/protocol.md over one WebSocket connection."""
    await serve_websocket(ws, rc.hub, rc.settings)
