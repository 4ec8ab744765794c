"""REST: create, list, inspect and delete rooms (their options live in SQL)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Response, status

from ..db.store import RoomExists
from ..hub.broker import Unavailable
from .deps import RoomcastDep
from .messages import BAD_BODY
from .schemas import MAX_OFFSET, ErrorBody, RoomDetail, RoomIn, RoomList, RoomName, RoomOut
from .security import AUTH_ERRORS, Caller, denied

__all__ = ["router"]

router = APIRouter(tags=["rooms"])

Responses = dict[int | str, dict[str, Any]]
UNAVAILABLE: Responses = {
    503: {"model": ErrorBody, "description": "the database or broker is unavailable"}
}
NOT_FOUND: Responses = {404: {"model": ErrorBody, "description": "no room of that name"}}
EXISTS: Responses = {409: {"model": ErrorBody, "description": "the room exists"}}


def _out(record: Any) -> RoomOut:
    return RoomOut.model_validate(record, from_attributes=True)


@router.post(
    "/rooms",
    status_code=status.HTTP_201_CREATED,
    response_model=RoomOut,
    responses=BAD_BODY | AUTH_ERRORS | EXISTS | UNAVAILABLE,
)
async def create_room(body: RoomIn, rc: RoomcastDep, caller: Caller) -> RoomOut:
    """Create a room with its options (needs an API key). Rooms also exist without
    this, on their namespace's options."""
    if not rc.authority.may_administer(caller):
        raise denied(caller, "create rooms")
    try:
        record = await rc.store.create_room(
            body.name, persist=body.persist, history_size=body.history_size, presence=body.presence
        )
    except RoomExists:
        raise HTTPException(status.HTTP_409_CONFLICT, f"room {body.name!r} exists") from None
    except Unavailable as exc:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, str(exc)) from None
    rc.archive.forget(body.name)
    return _out(record)


@router.get("/rooms", response_model=RoomList, responses=AUTH_ERRORS | UNAVAILABLE)
async def list_rooms(
    rc: RoomcastDep,
    caller: Caller,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> RoomList:
    """Created rooms, oldest first (needs an API key)."""
    if not rc.authority.may_administer(caller):
        raise denied(caller, "list rooms")
    try:
        records, total = await rc.store.list_rooms(offset, limit)
    except Unavailable as exc:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, str(exc)) from None
    return RoomList(rooms=[_out(r) for r in records], total=total, offset=offset, limit=limit)


@router.get(
    "/rooms/{room}", response_model=RoomDetail, responses=AUTH_ERRORS | NOT_FOUND | UNAVAILABLE
)
async def get_room(room: RoomName, rc: RoomcastDep, caller: Caller) -> RoomDetail:
    """A created room's options, current position and subscribers."""
    if not rc.authority.may_subscribe(caller, room):
        raise denied(caller, f"read {room!r}")
    try:
        record = await rc.store.get_room(room)
        if record is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"no room {room!r}")
        page = await rc.hub.history(room, limit=1, before=None)
        members = await rc.hub.presence(room)
    except Unavailable as exc:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, str(exc)) from None
    return RoomDetail(
        **_out(record).model_dump(),
        epoch=page.position.epoch,
        offset=page.position.offset,
        local_subscribers=rc.hub.local_subscribers(room),
        total_subscribers=len(members),
    )


@router.delete(
    "/rooms/{room}",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    responses=AUTH_ERRORS | NOT_FOUND | UNAVAILABLE,
)
async def delete_room(room: RoomName, rc: RoomcastDep, caller: Caller) -> Response:
    """Delete the room, its options and its stored messages. Its subscribers on every
    process get a `deleted` event and are unsubscribed. Needs an API key."""
    if not rc.authority.may_administer(caller):
        raise denied(caller, "delete rooms")
    try:
        if not await rc.store.delete_room(room):
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"no room {room!r}")
        rc.archive.forget(room)
        await rc.hub.close_room(room)
    except Unavailable as exc:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, str(exc)) from None
    return Response(status_code=status.HTTP_204_NO_CONTENT)
