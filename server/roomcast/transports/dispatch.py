"""Carry out one validated client request against the hub and queue its reply.

Transport-agnostic: it needs the connection's :class:`Subscriber` (where
replies are queued, in order with events) and :class:`Session`. Errors become
error replies here; only :class:`ConnectionClosing` escapes to the transport.
"""

from __future__ import annotations

import logging
import secrets
import time
from typing import Any

import orjson

from ..hub.broker import Recovery, Unavailable
from ..hub.hub import DurableNotPersisted, Hub
from ..hub.subscriber import Subscriber
from ..protocol.codec import encode_error, encode_reply
from ..protocol.codes import ErrorCode
from ..protocol.errors import ConnectionClosing, RequestError
from ..protocol.events import Position
from ..protocol.frames import (
    Connect,
    History,
    Ping,
    Presence,
    Publish,
    Request,
    Subscribe,
    Unsubscribe,
)
from ..protocol.session import Session

__all__ = ["PROTOCOL_VERSION", "handle_text"]

PROTOCOL_VERSION = 1

NODE_ID = secrets.token_hex(4)
"""This process's id, in every connect reply: which worker a client landed on."""

log = logging.getLogger("roomcast.dispatch")


def _subscribe_result(room: str, recovery: Recovery) -> dict[str, Any]:
    return {
        "room": room,
        "epoch": recovery.position.epoch,
        "offset": recovery.position.offset,
        "recovered": recovery.recovered,
        "replayed": len(recovery.events),
    }


async def _carry_out(request: Request, hub: Hub, sub: Subscriber, session: Session) -> None:
    rid = request.id
    if isinstance(request, Publish):
        data = session.payload(request)
        try:
            event = await hub.publish(request.room, data, sub.user, durable=request.durable)
        except DurableNotPersisted as exc:
            raise RequestError(ErrorCode.BAD_REQUEST, f"durable publish: {exc}", rid) from None
        sub.offer(encode_reply(rid, {"epoch": event.epoch, "offset": event.offset}))
    elif isinstance(request, Subscribe):
        s = request.since
        since = None if s is None else Position(s.epoch, s.offset)
        room = request.room
        await hub.subscribe(
            sub, room, since, lambda rec: sub.offer(encode_reply(rid, _subscribe_result(room, rec)))
        )
    elif isinstance(request, Unsubscribe):
        await hub.unsubscribe(sub, request.room)
        sub.offer(encode_reply(rid, {"room": request.room}))
    elif isinstance(request, History):
        page = await hub.history(request.room, limit=request.limit, before=request.before)
        result = {
            "room": request.room,
            "epoch": page.position.epoch,
            "offset": page.position.offset,
            "events": [orjson.Fragment(event.frame) for event in page.events],
            "more": page.more,
        }
        sub.offer_replay([encode_reply(rid, result)])  # asked for: not backlog
    elif isinstance(request, Presence):
        members = await hub.presence(request.room)
        result = {"room": request.room, "members": [entry.to_dict() for entry in members]}
        sub.offer(encode_reply(rid, result))
    elif isinstance(request, Ping):
        sub.offer(encode_reply(rid, {"ts": time.time()}))
    elif isinstance(request, Connect):
        if request.name is not None:
            sub.user = request.name
        result = {
            "conn": sub.conn_id,
            "user": sub.user,
            "node": NODE_ID,
            "version": PROTOCOL_VERSION,
        }
        sub.offer(encode_reply(rid, result))


async def handle_text(text: str, hub: Hub, sub: Subscriber, session: Session) -> None:
    """Decode, validate and carry out one text frame; queue its reply.

    Raises :class:`~roomcast.protocol.errors.ConnectionClosing` when the
    connection must be closed; every other failure becomes an error reply.
    """
    rid: int | None = None
    try:
        request = session.receive_text(text)
        rid = request.id
        await _carry_out(request, hub, sub, session)
    except RequestError as exc:
        sub.offer(encode_error(exc.request_id, exc.code, exc.message))
    except ConnectionClosing:
        raise
    except Unavailable as exc:
        sub.offer(encode_error(rid, ErrorCode.UNAVAILABLE, str(exc) or "unavailable"))
    except Exception:
        log.exception("request failed on connection %s", sub.conn_id)
        sub.offer(encode_error(rid, ErrorCode.INTERNAL, "internal error"))
