"""Real-time routes: WebSocket, and Server-Sent Events for one or several rooms."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Header, HTTPException, Query, WebSocket, status
from sse_starlette import EventSourceResponse

from ..protocol.events import Position
from ..protocol.frames import MAX_NAME_LENGTH, is_valid_room
from ..transports.sse import LastEventIdError, parse_last_event_id, sse_response
from ..transports.websocket import serve_websocket
from .deps import RoomcastDep

__all__ = ["router"]

router = APIRouter()

STREAM: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "an endless `text/event-stream` (docs/protocol.md)",
        "content": {"text/event-stream": {}},
    },
    400: {"description": "a Last-Event-ID this server did not issue"},
    422: {"description": "an invalid room name or parameter"},
}

LastEventIdHeader = Annotated[
    str | None, Header(alias="Last-Event-ID", description="sent by EventSource on reconnect")
]
LastEventIdQuery = Annotated[
    str | None, Query(description="a saved event id to resume from (the header wins)")
]
Name = Annotated[str | None, Query(min_length=1, max_length=MAX_NAME_LENGTH)]


@router.websocket("/ws")
async def websocket(ws: WebSocket, rc: RoomcastDep) -> None:
    """The protocol of docs/protocol.md over one WebSocket connection."""
    await serve_websocket(ws, rc.hub, rc.settings)


def _stream(
    rc: RoomcastDep, rooms: list[str], header: str | None, query: str | None, name: str | None
) -> EventSourceResponse:
    bad = [room for room in rooms if not is_valid_room(room)]
    if bad:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            f"invalid room {bad[0][:140]!r}: 1-128 letters, digits and _ . : -",
        )
    if len(rooms) > rc.settings.max_subscriptions:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            f"at most {rc.settings.max_subscriptions} rooms per stream",
        )
    since: dict[str, Position | None] = dict.fromkeys(rooms)
    last_event_id = header or query
    if last_event_id:
        try:
            since.update(parse_last_event_id(last_event_id, rooms))
        except LastEventIdError as exc:
            raise HTTPException(status.HTTP_400_BAD_REQUEST, str(exc)) from None
    return sse_response(rc.hub, rc.settings, since, name)


@router.get("/rooms/{room}/events", responses=STREAM, response_class=EventSourceResponse)
async def room_events(
    room: str,
    rc: RoomcastDep,
    last_event_id_header: LastEventIdHeader = None,
    last_event_id: LastEventIdQuery = None,
    name: Name = None,
) -> EventSourceResponse:
    """One room's events as Server-Sent Events; ids are `<epoch>:<offset>`."""
    return _stream(rc, [room], last_event_id_header, last_event_id, name)


@router.get("/events", responses=STREAM, response_class=EventSourceResponse)
async def events(
    rc: RoomcastDep,
    room: Annotated[list[str], Query(min_length=1, description="repeat for several rooms")],
    last_event_id_header: LastEventIdHeader = None,
    last_event_id: LastEventIdQuery = None,
    name: Name = None,
) -> EventSourceResponse:
    """Several rooms in one stream; ids are `<room>=<epoch>:<offset>;...`."""
    return _stream(rc, list(dict.fromkeys(room)), last_event_id_header, last_event_id, name)
