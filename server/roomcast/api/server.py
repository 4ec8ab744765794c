"""REST for backends: the server-side API (server_api.py) over HTTP.

Every route needs an administrator: an API key (``X-API-Key`` or
``Authorization: Bearer``), or a principal the application made with
``admin=True``. ``/broadcast`` runs ``on_publish`` per room, like every publish
that comes over the wire; ``disconnect`` and ``unsubscribe`` act on every worker.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Response, status
from fastapi.exceptions import RequestValidationError

from ..hub.broker import Unavailable
from ..protocol.codes import CloseCode
from .deps import RoomcastDep
from .messages import BAD_BODY, TOO_LARGE, UNAVAILABLE, checked_data, unavailable
from .schemas import (
    BroadcastBody,
    BroadcastOut,
    DisconnectBody,
    PublishedOut,
    RoomName,
    StatsOut,
)
from .security import AUTH_ERRORS, Caller, denied

__all__ = ["router"]

router = APIRouter(tags=["server"])


UserId = Annotated[
    str,
    Path(min_length=1, max_length=256, description="a principal's user id (a token's sub)"),
]


@router.post(
    "/broadcast",
    response_model=BroadcastOut,
    responses=BAD_BODY | AUTH_ERRORS | TOO_LARGE | UNAVAILABLE,
)
async def broadcast(body: BroadcastBody, rc: RoomcastDep, caller: Caller) -> BroadcastOut:
    """Publish `data` to every room of `rooms`, in order (needs an API key). On a 503
    the rooms before the failure did get it."""
    if not caller.admin:
        raise denied(caller, "broadcast")
    limit = rc.settings.max_broadcast_rooms
    if len(body.rooms) > limit:  # a 422 like every other invalid body
        msg = f"at most {limit} rooms per broadcast (max_broadcast_rooms)"
        error = {"type": "too_long", "loc": ("body", "rooms"), "msg": msg, "input": None}
        raise RequestValidationError([error])
    published = []
    for room in dict.fromkeys(body.rooms):
        data = await checked_data(rc, caller, room, body.data)
        try:
            event = await rc.hub.publish(room, data, caller.name)
        except Unavailable as exc:
            raise unavailable(exc) from None
        published.append(PublishedOut(room=room, epoch=event.epoch, offset=event.offset))
    return BroadcastOut(published=published)


@router.post(
    "/users/{user}/disconnect",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    responses=BAD_BODY | AUTH_ERRORS | UNAVAILABLE,
)
async def disconnect_user(
    user: UserId, body: DisconnectBody, rc: RoomcastDep, caller: Caller
) -> Response:
    """Close every connection of the user on every worker (WebSocket close, SSE `close`
    event) with `code` (default 3503: do not reconnect; send `{}` for it). Needs an API
    key. The body is required JSON, so a page of another site cannot send this with a
    form (a cross-site request with the user's cookies)."""
    if not caller.admin:
        raise denied(caller, "disconnect users")
    code = CloseCode(body.code)
    try:
        await rc.disconnect(user, code=code)
    except Unavailable as exc:
        raise unavailable(exc) from None
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.delete(
    "/users/{user}/rooms/{room}",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    responses=AUTH_ERRORS | UNAVAILABLE,
)
async def unsubscribe_user(
    user: UserId, room: RoomName, rc: RoomcastDep, caller: Caller
) -> Response:
    """Take every connection of the user out of the room on every worker; each gets an
    `unsubscribed` event. Needs an API key."""
    if not caller.admin:
        raise denied(caller, "unsubscribe users")
    try:
        await rc.unsubscribe(user, room)
    except Unavailable as exc:
        raise unavailable(exc) from None
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/stats", response_model=StatsOut, responses=AUTH_ERRORS)
async def stats(rc: RoomcastDep, caller: Caller) -> StatsOut:
    """This process's connections, subscriptions and rooms (each worker answers for
    itself). Needs an API key."""
    if not caller.admin:
        raise denied(caller, "read stats")
    return StatsOut.model_validate(rc.stats(), from_attributes=True)
