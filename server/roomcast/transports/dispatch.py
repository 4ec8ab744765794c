"""Carry out one validated client request against the hub and queue its reply.

Transport-agnostic: it needs the connection's :class:`Session` and
:class:`Client` (its principal, and its :class:`Subscriber`, where replies
are queued in order with events). Every request is checked with the
:class:`~roomcast.auth.Authority` through the client before it reaches the
hub, and then by the application's hooks (``on_subscribe``, ``on_publish``:
hooks.py), in the reader's own task. Errors become error replies here; only
:class:`ConnectionClosing` escapes to the transport.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from typing import Any

import orjson

from ..hub.broker import IdempotencyKey, Recovery, Unavailable
from ..hub.hub import DurableNotPersisted, Hub
from ..hub.publishing import PublishedNotPersisted
from ..protocol.codec import encode_error, encode_reply
from ..protocol.codes import ErrorCode
from ..protocol.errors import ConnectionClosing, ConnectionRefused, RequestError, Unauthorized
from ..protocol.events import Event, Position
from ..protocol.frames import (
    Connect,
    History,
    Ping,
    Presence,
    Publish,
    Refresh,
    Request,
    Subscribe,
    Unsubscribe,
)
from ..protocol.session import Session
from .client import Client
from .inflight import publish_result

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


async def _carry_out(request: Request, hub: Hub, session: Session, client: Client) -> None:
    rid = request.id
    sub = client.sub
    if isinstance(request, Connect):
        await _connect(request, client)
        return
    if client.principal is None:  # no connect frame: the handshake's token, or anonymous
        await client.login(client.handshake_token, None, rid)
    if isinstance(request, Publish):
        event = await (await _publish(request, hub, session, client))
        sub.offer(encode_reply(rid, publish_result(event)))
    elif isinstance(request, Subscribe):
        client.check_read(request.room, rid)
        assert client.principal is not None  # check_read refuses without one
        await client.hooks.subscribe(client.principal, request.room, rid)
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
        client.check_read(request.room, rid)
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
        client.check_read(request.room, rid)
        members = await hub.presence(request.room)
        result = {"room": request.room, "members": [entry.to_dict() for entry in members]}
        sub.offer(encode_reply(rid, result))
    elif isinstance(request, Ping):
        sub.offer(encode_reply(rid, {"ts": time.time()}))
    elif isinstance(request, Refresh):
        revoked = await client.refresh(request.token, rid)
        for room in revoked:
            await hub.unsubscribe(sub, room)
        expires = client.principal.expires if client.principal else None
        sub.offer(encode_reply(rid, {"expires": expires, "revoked": revoked}))


async def _connect(request: Connect, client: Client) -> None:
    """Authenticate with the frame's token (or the handshake's, or none)."""
    token = request.token or client.handshake_token
    if token is not None or client.principal is None:
        principal = await client.login(token, request.name, request.id)
    else:
        principal = client.principal
        if request.name is not None:
            client.rename(request.name)
    sub = client.sub
    result = {
        "conn": sub.conn_id,
        "user": sub.user,
        "user_id": principal.user,
        "expires": principal.expires,
        "node": NODE_ID,
        "version": PROTOCOL_VERSION,
        "anonymous": principal.anonymous,
    }
    sub.offer(encode_reply(request.id, result))


async def handle_text(text: str, hub: Hub, session: Session, client: Client) -> None:
    """Decode, validate and carry out one text frame; queue its reply.

    Raises :class:`~roomcast.protocol.errors.ConnectionClosing` when the
    connection must be closed; every other failure becomes an error reply.
    """
    rid: int | None = None
    sub = client.sub
    inflight = client.inflight
    try:
        request = session.receive_text(text)
        rid = request.id
        if isinstance(request, Publish) and client.principal is not None:
            await _submit_publish(request, hub, session, client)
            return
        await inflight.settle()  # whatever comes after a publish sees it
        await _carry_out(request, hub, session, client)
    except RequestError as exc:
        if client.needs_credentials:  # whatever went wrong, it must authenticate first
            raise Unauthorized("a token is required") from None
        inflight.add_frame(encode_error(exc.request_id, exc.code, exc.message))
        if exc.code is ErrorCode.FORBIDDEN:
            session.refused()  # probing rooms counts towards max_bad_frames
    except ConnectionRefused as exc:  # on_connect said no: its error, then the close
        inflight.add_frame(encode_error(rid, exc.error.code, exc.error.message))
        raise
    except ConnectionClosing:
        raise
    except Unavailable as exc:
        inflight.add_frame(encode_error(rid, ErrorCode.UNAVAILABLE, str(exc) or "unavailable"))
    except PublishedNotPersisted as exc:  # it went out: not `unavailable` (hub/publishing.py)
        inflight.add_frame(encode_error(rid, ErrorCode.NOT_PERSISTED, str(exc)))
    except Exception:
        log.exception("request failed on connection %s", sub.conn_id)
        inflight.add_frame(encode_error(rid, ErrorCode.INTERNAL, "internal error"))


async def _submit_publish(request: Publish, hub: Hub, session: Session, client: Client) -> None:
    """Hand a publish to the hub and go on: its reply follows, in request order,
    when it completes (inflight.py)."""
    await client.inflight.room()
    client.inflight.add(request.id, await _publish(request, hub, session, client))


async def _publish(
    request: Publish, hub: Hub, session: Session, client: Client
) -> asyncio.Future[Event]:
    """Check a publish (permission, size), let ``on_publish`` have its say, and
    hand it to the hub; the future answers it. ``on_publish`` does not run for a
    publish whose idempotency key is known already (it is not published again)."""
    rid = request.id
    client.check_publish(request.room, rid)
    data = session.payload(request)
    hooks = client.hooks
    principal = client.principal
    assert principal is not None  # check_publish refuses without one
    key = request.idempotency_key
    idempotency = None if key is None else IdempotencyKey(principal.idempotency_scope, key)
    try:
        if hooks.on_publish:
            if idempotency is not None:
                known = await hub.submit_duplicate(
                    request.room, idempotency, durable=request.durable
                )
                if known is not None:
                    return known
            replaced = await hooks.publish(principal, request.room, request.data, rid)
            if replaced is not None:
                data = replaced
        return await hub.submit_publish(
            request.room, data, client.sub.user, durable=request.durable, idempotency=idempotency
        )
    except DurableNotPersisted as exc:
        raise RequestError(ErrorCode.BAD_REQUEST, f"durable publish: {exc}", rid) from None
