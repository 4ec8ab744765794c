"""The protocol as an AsyncAPI 3.0 document, generated from the models.

Every schema comes from a pydantic model: the requests of frames.py, the
replies, errors and events of replies.py, the error and close codes of
codes.py. Nothing here restates a field, so the document cannot drift from
what the server validates; the tests check every frame the server sends against
it. The document describes the server: it ``receive``\\ s requests and
``send``\\ s replies and events, on the WebSocket channel and two SSE channels.

:func:`asyncapi_document` builds it for a given host and path prefix (a host
application that mounts roomcast under ``/rt`` gets ``/rt/ws``).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from . import replies
from .asyncapi_examples import CLIENT_EXAMPLES, SERVER_EXAMPLES, SSE_EXAMPLES
from .codes import CloseCode, ErrorCode, close_reason, error_meaning, should_reconnect
from .frames import MODELS

__all__ = ["ASYNCAPI_VERSION", "asyncapi_document", "server_messages"]

ASYNCAPI_VERSION = "3.0.0"
_REF = "#/components/schemas/{model}"
_SSE_BINDING = {"http": {"method": "GET", "bindingVersion": "0.3.0"}}

# (message name, model, title) of everything the server sends on the WebSocket.
_WS_SERVER: list[tuple[str, type[BaseModel], str]] = [
    *((f"{op}Reply", model, f"{op} reply") for op, model in replies.REPLIES.items()),
    ("errorReply", replies.ErrorReply, "error reply"),
    *((f"{kind}Event", model, f"{kind} event") for kind, model in replies.EVENTS.items()),
]
# (message name, model, SSE event name, id pattern or None) of an SSE stream.
_SSE_ID = r"^[^:]{1,64}:[0-9]+$"
_SSE_MULTI_ID = r"^[^=;]+=[^:;]{1,64}:[0-9]+(;[^=;]+=[^:;]{1,64}:[0-9]+)*$"
_SSE: list[tuple[str, type[BaseModel], str, bool]] = [
    ("sseSubscribed", replies.SubscribeResult, "subscribed", True),
    ("sseMessage", replies.MessageEvent, "message", True),
    ("sseJoin", replies.JoinEvent, "join", False),
    ("sseLeave", replies.LeaveEvent, "leave", False),
    ("sseReset", replies.ResetEvent, "reset", True),
    ("sseUnsubscribed", replies.UnsubscribedEvent, "unsubscribed", False),
    ("sseDeleted", replies.DeletedEvent, "deleted", False),
    ("sseClose", replies.SseClose, "close", False),
    ("sseError", replies.SseError, "error", False),
]


def server_messages() -> dict[str, type[BaseModel]]:
    """Every WebSocket frame the server sends, by message name (``connectReply``,
    ``errorReply``, ``messageEvent``, ...)."""
    return {name: model for name, model, _ in _WS_SERVER}


def _advice(code: CloseCode) -> str:
    if code == CloseCode.TOKEN_EXPIRED:
        return "get a new token, reconnect and resume"
    if 3000 <= code < 3500:
        return "reconnect and resume"
    return "reconnect" if should_reconnect(code) else "do not reconnect"


def _summary(model: type[BaseModel], default: str) -> str:
    """The first line of a model's docstring, without reST markup."""
    return (model.__doc__ or default).strip().splitlines()[0].replace("``", "")


def _schemas() -> dict[str, Any]:
    models: list[type[BaseModel]] = [
        *MODELS.values(),
        *(model for _, model, _ in _WS_SERVER),
        *(model for _, model, _, _ in _SSE),
    ]
    _, top = models_json_schema([(m, "validation") for m in models], ref_template=_REF)
    schemas: dict[str, Any] = top["$defs"]
    schemas["ErrorCode"] = {
        "title": "ErrorCode",
        "type": "string",
        "description": "The stable code of an error reply. The connection stays open.",
        "oneOf": [{"const": c.value, "description": error_meaning(c)} for c in ErrorCode],
    }
    schemas["CloseCode"] = {
        "title": "CloseCode",
        "type": "integer",
        "description": "WebSocket close codes. 3000-3499: reconnect and resume from the last "
        "position seen; 3500-3999: do not reconnect; 4000-4999: the application's own.",
        "oneOf": [
            {
                "const": int(c),
                "title": c.name,
                "description": f"{close_reason(c)}; {_advice(c)}",
            }
            for c in CloseCode
        ],
    }
    return schemas


def _ref(kind: str, name: str) -> dict[str, str]:
    return {"$ref": f"#/components/{kind}/{name}"}


def _messages() -> dict[str, Any]:
    messages: dict[str, Any] = {}
    for op, model in MODELS.items():
        messages[op] = {
            "name": op,
            "title": f"{op} request",
            "summary": _summary(model, f"The {op} request."),
            "contentType": "application/json",
            "payload": _ref("schemas", model.__name__),
            "examples": CLIENT_EXAMPLES.get(op, []),
        }
    for name, server_model, title in _WS_SERVER:
        messages[name] = {
            "name": name,
            "title": title,
            "summary": _summary(server_model, title),
            "contentType": "application/json",
            "payload": _ref("schemas", server_model.__name__),
            "examples": SERVER_EXAMPLES.get(name, []),
        }
    for name, sse_model, event, has_id in _SSE:
        headers: dict[str, Any] = {"event": {"const": event, "description": "the SSE event"}}
        if has_id:
            headers["id"] = {
                "type": "string",
                "description": "the SSE id: <epoch>:<offset> on a one-room stream, "
                "<room>=<epoch>:<offset>;... (every room's position) on /events",
                "anyOf": [{"pattern": _SSE_ID}, {"pattern": _SSE_MULTI_ID}],
            }
        messages[name] = {
            "name": name,
            "title": f"event: {event}",
            "summary": _summary(sse_model, event),
            "contentType": "application/json",
            "headers": {
                "type": "object",
                "properties": headers,
                "required": sorted(headers),
            },
            "payload": _ref("schemas", sse_model.__name__),
            "examples": SSE_EXAMPLES.get(event, []),
        }
    return messages


def _sse_query(several: bool) -> dict[str, Any]:
    props: dict[str, Any] = {
        "name": {"type": "string", "minLength": 1, "maxLength": 64},
        "last_event_id": {"type": "string", "description": "a saved id to resume from"},
        "token": {"type": "string", "description": "a JWT (access logs record it)"},
    }
    if several:
        props["room"] = {"type": "array", "items": {"type": "string"}, "minItems": 1}
    return {"type": "object", "properties": props, **({"required": ["room"]} if several else {})}


def _channels() -> dict[str, Any]:
    ws_messages = {op: _ref("messages", op) for op in MODELS}
    ws_messages.update({name: _ref("messages", name) for name, _, _ in _WS_SERVER})
    sse_messages = {name: _ref("messages", name) for name, _, _, _ in _SSE}
    return {
        "websocket": {
            "address": "/ws",
            "title": "The WebSocket",
            "description": "One JSON object per text frame. Requests carry an op and an id; "
            "every request gets exactly one reply with the same id; events have a type "
            "and no id. Replies and events share one ordered stream.",
            "servers": [{"$ref": "#/servers/websocket"}],
            "messages": ws_messages,
            "bindings": {
                "ws": {
                    "method": "GET",
                    "query": {
                        "type": "object",
                        "properties": {
                            "token": {
                                "type": "string",
                                "description": "a JWT; prefer the connect frame's token",
                            }
                        },
                    },
                    "bindingVersion": "0.1.0",
                }
            },
        },
        "roomEvents": {
            "address": "/rooms/{room}/events",
            "title": "One room as Server-Sent Events",
            "description": "text/event-stream; resume with Last-Event-ID (ids <epoch>:<offset>).",
            "servers": [{"$ref": "#/servers/http"}],
            "parameters": {"room": {"description": "the room name"}},
            "messages": sse_messages,
        },
        "events": {
            "address": "/events",
            "title": "Several rooms as Server-Sent Events",
            "description": "text/event-stream of every ?room=; one id resumes them all.",
            "servers": [{"$ref": "#/servers/http"}],
            "messages": sse_messages,
        },
    }


def _operations() -> dict[str, Any]:
    ops: dict[str, Any] = {}
    ws = {"$ref": "#/channels/websocket"}
    for op in MODELS:
        ops[f"receive{op.capitalize()}"] = {
            "action": "receive",
            "channel": ws,
            "title": op,
            "messages": [{"$ref": f"#/channels/websocket/messages/{op}"}],
            "reply": {
                "channel": ws,
                "messages": [
                    {"$ref": f"#/channels/websocket/messages/{op}Reply"},
                    {"$ref": "#/channels/websocket/messages/errorReply"},
                ],
            },
        }
    ops["sendEvents"] = {
        "action": "send",
        "channel": ws,
        "title": "events",
        "summary": "the events of the rooms this connection subscribed to",
        "messages": [
            {"$ref": f"#/channels/websocket/messages/{kind}Event"} for kind in replies.EVENTS
        ],
    }
    for channel, several in (("roomEvents", False), ("events", True)):
        ops[f"sse{channel[0].upper()}{channel[1:]}"] = {
            "action": "send",
            "channel": {"$ref": f"#/channels/{channel}"},
            "bindings": {"http": {**_SSE_BINDING["http"], "query": _sse_query(several)}},
            "messages": [
                {"$ref": f"#/channels/{channel}/messages/{name}"} for name, _, _, _ in _SSE
            ],
        }
    return ops


_SECURITY = {
    "bearer": {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "JWT",
        "description": "auth=jwt: Authorization: Bearer on SSE and REST. On the WebSocket "
        "the token goes in the connect frame (recommended), the cookie or ?token=.",
    },
    "tokenQuery": {"type": "httpApiKey", "name": "token", "in": "query"},
    "tokenCookie": {"type": "httpApiKey", "name": "roomcast_token", "in": "cookie"},
}


def asyncapi_document(
    *, host: str = "localhost:8000", root: str = "", secure: bool = False, version: str = "1"
) -> dict[str, Any]:
    """The AsyncAPI 3.0 document of the protocol, for a server on ``host`` with its
    routes under ``root`` (``""`` or ``/rt``); ``secure`` picks wss/https.
    ``version`` is the server's version (the protocol's is in the connect reply)."""
    security = [_ref("securitySchemes", name) for name in _SECURITY]
    pathname = {"pathname": root} if root else {}
    return {
        "asyncapi": ASYNCAPI_VERSION,
        "id": "urn:roomcast:protocol:1",
        "info": {
            "title": "roomcast protocol",
            "version": version,
            "description": "Rooms over WebSocket and Server-Sent Events: publish, subscribe, "
            "resume from a position, presence. Close codes: components.schemas.CloseCode. "
            "The prose: docs/protocol.md.",
            "license": {"name": "MIT"},
        },
        "defaultContentType": "application/json",
        "servers": {
            "websocket": {
                "host": host,
                "protocol": "wss" if secure else "ws",
                **pathname,
                "security": security,
            },
            "http": {
                "host": host,
                "protocol": "https" if secure else "http",
                **pathname,
                "security": security,
            },
        },
        "channels": _channels(),
        "operations": _operations(),
        "components": {
            "schemas": _schemas(),
            "messages": _messages(),
            "securitySchemes": _SECURITY,
        },
    }
