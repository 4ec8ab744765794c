"""REST: publish to a room, page back through its history, see who is there."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, status
from fastapi.exceptions import RequestValidationError

from ..auth import Principal
from ..hub.broker import Duplicate, IdempotencyKey, Unavailable
from ..hub.hub import DurableNotPersisted
from ..hub.publishing import PublishedNotPersisted
from ..protocol.codec import DataNotEncodable, encode_data
from ..protocol.codes import ErrorCode, http_status_of
from ..protocol.errors import RequestError
from .deps import RoomcastDep
from .schemas import (
    MAX_OFFSET,
    ErrorBody,
    HistoryLimit,
    HistoryOut,
    IdempotencyKeyHeader,
    PresenceOut,
    PublishBody,
    PublishOut,
    RoomName,
)
from .security import AUTH_ERRORS, Caller, denied

__all__ = ["router"]

router = APIRouter(tags=["rooms"])

Responses = dict[int | str, dict[str, Any]]

UNAVAILABLE: Responses = {503: {"model": ErrorBody, "description": "the broker is unavailable"}}
TOO_LARGE: Responses = {413: {"model": ErrorBody, "description": "data over max_payload_bytes"}}
NOT_PERSISTED: Responses = {
    409: {"model": ErrorBody, "description": "durable=true on a room that is not persisted"}
}
BAD_BODY: Responses = {
    400: {
        "model": ErrorBody,
        "description": "a JSON body that is not valid UTF-8 (`There was an error parsing the "
        "body`). A body that is not JSON, or not an object, is a 422 like any invalid body",
    }
}
NOT_COMMITTED: Responses = {
    500: {
        "model": ErrorBody,
        "description": "durable=true: delivered live and in the history, but the commit failed"
        " (error code not_persisted); publishing again would deliver it twice",
    }
}


def unavailable(exc: Unavailable) -> HTTPException:
    return HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, str(exc) or "broker unavailable")


@router.post(
    "/rooms/{room}/messages",
    status_code=status.HTTP_201_CREATED,
    response_model=PublishOut,
    response_model_exclude_unset=True,
    responses=BAD_BODY | AUTH_ERRORS | NOT_PERSISTED | TOO_LARGE | NOT_COMMITTED | UNAVAILABLE,
)
async def publish(
    room: RoomName,
    body: PublishBody,
    rc: RoomcastDep,
    caller: Caller,
    durable: Annotated[
        bool, Query(description="answer only once the event is committed (persisted rooms)")
    ] = False,
    idempotency_key: IdempotencyKeyHeader = None,
) -> PublishOut:
    """Publish `data` to the room: every subscriber gets it as a `message` event.
    Needs an API key, or a token whose `publish` patterns match the room.
    503: refused, nobody got it (retry). 500 with `durable`: it went out but was
    not committed (`not_persisted`; do not simply retry). With an `Idempotency-Key`,
    a retry within `idempotency_window` seconds is not published again: it gets
    `201` with the first publish's position and `"duplicate": true`."""
    if not rc.authority.may_publish(caller, room):
        raise denied(caller, f"publish to {room!r}")
    data = encoded_data(rc, body.data)
    idempotency = (
        None
        if idempotency_key is None
        else IdempotencyKey(caller.idempotency_scope, idempotency_key)
    )
    try:
        pending = None
        if idempotency is not None and rc.services.hooks.on_publish:  # not run for a duplicate
            pending = await rc.hub.submit_duplicate(room, idempotency, durable=durable)
        if pending is None:
            data = await hooked_data(rc, caller, room, body.data, data)
            # API keys are "api"; a token or the application's principal publishes as its user.
            pending = await rc.hub.submit_publish(
                room, data, caller.name, durable=durable, idempotency=idempotency
            )
        event = await pending
    except DurableNotPersisted as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, f"durable publish: {exc}") from None
    except Unavailable as exc:
        raise unavailable(exc) from None
    except PublishedNotPersisted as exc:
        raise HTTPException(http_status_of(ErrorCode.NOT_PERSISTED), str(exc)) from None
    if isinstance(event, Duplicate):
        return PublishOut(room=room, epoch=event.epoch, offset=event.offset, duplicate=True)
    return PublishOut(room=room, epoch=event.epoch, offset=event.offset)


async def checked_data(rc: RoomcastDep, caller: Principal, room: str, value: Any) -> bytes:
    """A REST publish's ``data`` as JSON bytes: encodable, within
    ``max_payload_bytes``, and as the application's ``on_publish`` has it."""
    return await hooked_data(rc, caller, room, value, encoded_data(rc, value))


def encoded_data(rc: RoomcastDep, value: Any) -> bytes:
    """A REST publish's ``data`` as JSON bytes, encodable and within
    ``max_payload_bytes`` (422 or 413 otherwise)."""
    try:
        data = encode_data(value)
    except DataNotEncodable as exc:  # a 422 like every other invalid body
        error = {"type": "value_error", "loc": ("body", "data"), "msg": str(exc), "input": None}
        raise RequestValidationError([error]) from None
    limit = rc.settings.max_payload_bytes
    if len(data) > limit:
        raise HTTPException(
            status.HTTP_413_CONTENT_TOO_LARGE, f"data is {len(data)} bytes; the limit is {limit}"
        )
    return data


async def hooked_data(
    rc: RoomcastDep, caller: Principal, room: str, value: Any, data: bytes
) -> bytes:
    """``data`` (``value`` encoded) as the application's ``on_publish`` has it."""
    try:
        replaced = await rc.services.hooks.publish(caller, room, value)
    except RequestError as exc:
        raise HTTPException(http_status_of(exc.code), exc.message) from None
    return data if replaced is None else replaced


@router.get(
    "/rooms/{room}/messages", response_model=HistoryOut, responses=AUTH_ERRORS | UNAVAILABLE
)
async def history(
    room: RoomName,
    rc: RoomcastDep,
    caller: Caller,
    before: Annotated[
        int | None, Query(ge=1, le=MAX_OFFSET, description="offsets below this one")
    ] = None,
    limit: Annotated[HistoryLimit, Query()] = 50,
) -> HistoryOut:
    """Page backwards through the room's retained events (oldest first in a page)."""
    if not rc.authority.may_subscribe(caller, room):
        raise denied(caller, f"read {room!r}")
    try:
        page = await rc.hub.history(room, limit=limit, before=before)
    except Unavailable as exc:
        raise unavailable(exc) from None
    return HistoryOut.of(room, page)


@router.get(
    "/rooms/{room}/presence", response_model=PresenceOut, responses=AUTH_ERRORS | UNAVAILABLE
)
async def presence(room: RoomName, rc: RoomcastDep, caller: Caller) -> PresenceOut:
    """Who is subscribed to the room now (on every process, with Redis)."""
    if not rc.authority.may_subscribe(caller, room):
        raise denied(caller, f"read {room!r}")
    try:
        entries = await rc.hub.presence(room)
    except Unavailable as exc:
        raise unavailable(exc) from None
    return PresenceOut.of(room, entries)
