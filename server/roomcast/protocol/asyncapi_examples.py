"""The examples of the AsyncAPI document (asyncapi.py): AsyncAPI Message Example
objects, by message name.

The client examples, sent in the order written (``connect`` first) on one
connection to a server with ``auth=off``, are a valid session: the tests replay
them against a live server and check each reply against the document. The
server examples are frames of docs/protocol.md's example session; every
example validates against its message's schema (tests/protocol).
"""

from __future__ import annotations

from typing import Any

__all__ = ["CLIENT_EXAMPLES", "SERVER_EXAMPLES", "SSE_EXAMPLES"]

_ROOM = "chat:lobby"
_EPOCH = "jNeHO3FD"
_MESSAGE = {
    "type": "message",
    "room": _ROOM,
    "epoch": _EPOCH,
    "offset": 1,
    "data": {"text": "hi ann"},
    "sender": "bob",
    "ts": 1795324714.2407732,
}


def _ex(name: str, payload: dict[str, Any], **headers: str) -> dict[str, Any]:
    example: dict[str, Any] = {"name": name, "payload": payload}
    if headers:
        example["headers"] = headers
    return example


CLIENT_EXAMPLES: dict[str, list[dict[str, Any]]] = {
    "connect": [_ex("anonymous", {"op": "connect", "id": 0, "name": "ann"})],
    "subscribe": [
        _ex("fromNow", {"op": "subscribe", "id": 1, "room": _ROOM}),
        _ex(
            "resume",
            {"op": "subscribe", "id": 2, "room": "chat:x", "since": {"epoch": _EPOCH, "offset": 1}},
        ),
    ],
    "publish": [
        _ex(
            "keyed",
            {
                "op": "publish",
                "id": 3,
                "room": _ROOM,
                "data": {"text": "hi"},
                "idempotency_key": "c1-000042",
            },
        )
    ],
    "history": [_ex("newest", {"op": "history", "id": 4, "room": _ROOM, "limit": 2})],
    "presence": [_ex("members", {"op": "presence", "id": 5, "room": _ROOM})],
    "unsubscribe": [_ex("leave", {"op": "unsubscribe", "id": 6, "room": _ROOM})],
    "ping": [_ex("ping", {"op": "ping", "id": 7})],
    "refresh": [_ex("newToken", {"op": "refresh", "id": 8, "token": "eyJhbGciOiJIUzI1NiIs"})],
}
"""Request examples; replayed in this order (dict order) they are a session."""

SERVER_EXAMPLES: dict[str, list[dict[str, Any]]] = {
    "connectReply": [
        _ex(
            "anonymous",
            {
                "id": 0,
                "ok": True,
                "result": {
                    "conn": "f430b0f21d73",
                    "user": "ann",
                    "user_id": "anon-36f128",
                    "expires": None,
                    "node": "23411ddb",
                    "version": 1,
                    "anonymous": True,
                },
            },
        )
    ],
    "subscribeReply": [
        _ex(
            "resumed",
            {
                "id": 1,
                "ok": True,
                "result": {
                    "room": _ROOM,
                    "epoch": _EPOCH,
                    "offset": 3,
                    "recovered": True,
                    "replayed": 2,
                },
            },
        )
    ],
    "unsubscribeReply": [_ex("left", {"id": 6, "ok": True, "result": {"room": _ROOM}})],
    "publishReply": [
        _ex("published", {"id": 3, "ok": True, "result": {"epoch": _EPOCH, "offset": 1}}),
        _ex(
            "duplicate",
            {"id": 3, "ok": True, "result": {"epoch": _EPOCH, "offset": 1, "duplicate": True}},
        ),
    ],
    "historyReply": [
        _ex(
            "page",
            {
                "id": 4,
                "ok": True,
                "result": {
                    "room": _ROOM,
                    "epoch": _EPOCH,
                    "offset": 1,
                    "events": [_MESSAGE],
                    "more": False,
                },
            },
        )
    ],
    "presenceReply": [
        _ex(
            "members",
            {
                "id": 5,
                "ok": True,
                "result": {
                    "room": _ROOM,
                    "members": [{"conn": "1620040e54e1", "user": "ann", "joined": 1795324714.2}],
                },
            },
        )
    ],
    "refreshReply": [
        _ex("renewed", {"id": 8, "ok": True, "result": {"expires": 1795336972.0, "revoked": []}})
    ],
    "pingReply": [_ex("pong", {"id": 7, "ok": True, "result": {"ts": 1795324716.552616}})],
    "errorReply": [
        _ex(
            "notSubscribed",
            {
                "id": 15,
                "ok": False,
                "error": {"code": "not_subscribed", "message": "not subscribed"},
            },
        ),
        _ex(
            "notJson",
            {
                "id": None,
                "ok": False,
                "error": {"code": "bad_request", "message": "frame is not valid JSON"},
            },
        ),
    ],
    "messageEvent": [_ex("message", _MESSAGE)],
    "joinEvent": [_ex("join", {"type": "join", "room": _ROOM, "user": "bob", "conn": "dc3c"})],
    "leaveEvent": [_ex("leave", {"type": "leave", "room": _ROOM, "user": "bob", "conn": "dc3c"})],
    "resetEvent": [
        _ex("reset", {"type": "reset", "room": _ROOM, "epoch": "c37q1byC", "offset": 0})
    ],
    "unsubscribedEvent": [
        _ex("server", {"type": "unsubscribed", "room": _ROOM, "reason": "server"})
    ],
    "deletedEvent": [_ex("deleted", {"type": "deleted", "room": _ROOM})],
}

_ID = f"{_EPOCH}:1"
SSE_EXAMPLES: dict[str, list[dict[str, Any]]] = {
    "subscribed": [
        _ex(
            "fresh",
            {"room": _ROOM, "epoch": _EPOCH, "offset": 0, "recovered": False, "replayed": 0},
            event="subscribed",
            id=f"{_EPOCH}:0",
        )
    ],
    "message": [_ex("message", _MESSAGE, event="message", id=_ID)],
    "join": [_ex("join", SERVER_EXAMPLES["joinEvent"][0]["payload"], event="join")],
    "leave": [_ex("leave", SERVER_EXAMPLES["leaveEvent"][0]["payload"], event="leave")],
    "reset": [
        _ex("reset", SERVER_EXAMPLES["resetEvent"][0]["payload"], event="reset", id="c37q1byC:0")
    ],
    "unsubscribed": [
        _ex("server", SERVER_EXAMPLES["unsubscribedEvent"][0]["payload"], event="unsubscribed")
    ],
    "deleted": [_ex("deleted", SERVER_EXAMPLES["deletedEvent"][0]["payload"], event="deleted")],
    "close": [_ex("shutdown", {"code": 3000, "reason": "server shutdown"}, event="close")],
    "error": [_ex("unavailable", {"code": "unavailable", "message": "redis down"}, event="error")],
}
"""SSE examples by event name, with their SSE ``event`` and ``id`` as headers."""
