"""Real-time routes: WebSocket, and Server-Sent Events for one or several rooms."""

from __future__ import annotations

import asyncio.coroutines
import inspect
from collections.abc import Awaitable, Callable, Coroutine
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Header, HTTPException, Query, Request, WebSocket, status
from fastapi.exception_handlers import http_exception_handler
from sse_starlette import EventSourceResponse
from starlette.datastructures import Headers, QueryParams
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from ..auth import ConnectionLease, Principal
from ..protocol.codes import http_status_of
from ..protocol.errors import ConnectionClosing, RequestError
from ..protocol.events import Position
from ..protocol.frames import MAX_NAME_LENGTH, is_valid_room
from ..transports.sse import LastEventIdError, parse_last_event_id, sse_response
from ..transports.websocket import serve_websocket
from .deps import RoomcastDep, get_roomcast, scope_principal
from .security import denied, http_error, stream_credentials

__all__ = [
    "SSE_TAG",
    "DirectWebSocketRoute",
    "asgi3",
    "router",
    "sse_connection",
    "websocket_connection",
    "websocket_path",
]

router = APIRouter()

SSE_TAG = "events (SSE)"

STREAM: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "an endless `text/event-stream` (docs/protocol.md)",
        "content": {"text/event-stream": {}},
    },
    400: {"description": "a Last-Event-ID this server did not issue"},
    401: {"description": "missing, invalid or expired token (see WWW-Authenticate)"},
    403: {"description": "a room the token does not allow, or a page of another origin"},
    422: {"description": "an invalid room name or parameter"},
}

LastEventIdHeader = Annotated[
    str | None, Header(alias="Last-Event-ID", description="sent by EventSource on reconnect")
]
LastEventIdQuery = Annotated[
    str | None, Query(description="a saved event id to resume from (the header wins)")
]
Name = Annotated[str | None, Query(min_length=1, max_length=MAX_NAME_LENGTH)]
Token = Annotated[
    str | None, Query(description="a token (prefer Authorization: Bearer or the auth cookie)")
]


async def websocket(ws: WebSocket) -> None:
    """The protocol of docs/protocol.md over one WebSocket connection.

    A FastAPI WebSocket route, so that the dependencies a host app gives
    ``include_router`` (and the application's ``authenticate``) guard it like
    every other route: one that refuses answers the upgrade with its HTTP status
    before any frame is read. FastAPI keeps its exit stacks and its solver's
    frames alive for the connection's life (~5 KB); the standalone app answers
    /ws before all that (:func:`websocket_connection`, app.py)."""
    rc = get_roomcast(ws)
    await serve_websocket(ws, rc.services, scope_principal(ws))


router.add_api_websocket_route("/ws", websocket)


def websocket_connection(scope: Scope, receive: Receive, send: Send) -> Coroutine[Any, Any, None]:
    """What the standalone app runs for ``/ws``: :func:`websocket`, past FastAPI.

    Every coroutine between uvicorn and the connection's reader stays suspended
    for as long as the connection is open, each with its frame and locals: FastAPI
    and Starlette's ``__call__``, their middleware, the router, its
    included-router wrappers and route handling add up to several KB per idle
    connection. This is a plain function that returns the connection's own
    coroutine (``serve_websocket``), so nothing of it stays suspended either; as
    nothing else sees the scope, the request headers are dropped once the
    connection is admitted. A host app that mounts roomcast's router keeps the
    ordinary route (and its own middleware, which may read the headers)."""
    ws = WebSocket(scope, receive, send)
    rc = get_roomcast(ws)
    return serve_websocket(ws, rc.services, scope_principal(ws), forget_headers=True)


F = TypeVar("F", bound=Callable[..., Any])


def asgi3(call: F) -> F:
    """Mark ``call``, a plain function that returns a coroutine, as a coroutine
    function: servers tell an ASGI 3 application from an ASGI 2 one by asking
    (uvicorn: ``asyncio.iscoroutinefunction``, ``inspect``'s from Python 3.14)."""
    mark = getattr(inspect, "markcoroutinefunction", None)  # Python 3.12+
    if mark is not None:
        mark(call)
    marker = getattr(asyncio.coroutines, "_is_coroutine", None)  # what 3.11's asyncio reads
    if marker is not None:
        setattr(call, "_is_coroutine", marker)  # noqa: B010 (a function's attribute)
    return call


def websocket_path(scope: Scope, path: str = "/ws") -> bool:
    """``scope`` is a WebSocket connection to ``path`` below the app's ``root_path``."""
    return scope["type"] == "websocket" and _route_path(scope) == path


def _route_path(scope: Scope) -> str:
    """The path below the app's ``root_path`` (as Starlette's router matches it)."""
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    if root and path.startswith(root) and path[len(root) : len(root) + 1] == "/":
        return path[len(root) :]
    return path


class DirectWebSocketRoute:
    """ASGI middleware: ``/ws`` goes straight to :func:`websocket_connection`,
    past the application it wraps (its middleware stack and FastAPI's router).
    Not a coroutine function either: it returns the awaitable it chose. (The
    standalone app does the same in its own ``__call__``, app.py, which also
    leaves FastAPI's and Starlette's frames out.)"""

    def __init__(self, app: ASGIApp, path: str = "/ws") -> None:
        self.app = app
        self.path = path

    @asgi3
    def __call__(self, scope: Scope, receive: Receive, send: Send) -> Awaitable[None]:
        if websocket_path(scope, self.path):
            return websocket_connection(scope, receive, send)
        return self.app(scope, receive, send)


async def _admit(
    request: Request, rc: RoomcastDep, rooms: list[str], name: str | None, token: str | None
) -> tuple[Principal, ConnectionLease]:
    """Authenticate an SSE request (a token, or the application's principal), check
    its rooms, take the stream's place in the connection limits, then ask the
    application's hooks: ``on_connect``, and ``on_subscribe`` for each room."""
    authority = rc.authority
    origin, scheme = request.headers.get("origin"), request.url.scheme
    if authority.host_authenticates:
        # The application's credentials are most likely a cookie: same rule as below.
        if not authority.origins.allows(origin, request.headers.get("host"), scheme=scheme):
            raise HTTPException(status.HTTP_403_FORBIDDEN, f"origin {origin!r} is not allowed")
        host = scope_principal(request)
        if host is None:
            raise HTTPException(status.HTTP_401_UNAUTHORIZED, "not authenticated")
        principal = host
    else:
        token, from_cookie = stream_credentials(request, authority, token)
        cookie_credentials = from_cookie and authority.required  # auth=off ignores tokens
        host_header = request.headers.get("host")
        if cookie_credentials and not authority.origins.allows(origin, host_header, scheme=scheme):
            raise HTTPException(status.HTTP_403_FORBIDDEN, f"origin {origin!r} is not allowed")
        try:
            principal = await authority.authenticate(token, name)
        except ConnectionClosing as exc:
            raise http_error(exc, presented=token is not None) from None
    for room in rooms:
        if not authority.may_subscribe(principal, room):
            raise denied(principal, f"read {room!r}")
    lease = None
    try:
        lease = authority.limiter.lease(request.client.host if request.client else None)
        lease.claim_user(None if principal.anonymous else principal.user)
    except ConnectionClosing as exc:
        if lease is not None:
            lease.release()
        raise http_error(exc, retry_after=rc.settings.retry_after) from None
    hooks = rc.services.hooks
    connected = False
    try:
        await hooks.connect(principal)
        connected = True
        for room in rooms:
            await hooks.subscribe(principal, room)
    except RequestError as exc:
        lease.release()
        if connected:
            await hooks.disconnect(principal)
        raise HTTPException(http_status_of(exc.code), exc.message) from None
    return principal, lease


async def _stream(
    request: Request,
    rc: RoomcastDep,
    rooms: list[str],
    header: str | None,
    query: str | None,
    name: str | None,
    token: str | None,
) -> EventSourceResponse:
    bad = [room for room in rooms if not is_valid_room(room)]
    if bad:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            f"invalid room {bad[0][:140]!r}: 1-128 letters, digits and _ . : -",
        )
    long = [room for room in rooms if len(room) > rc.settings.max_room_length]
    if long:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            f"room names are at most {rc.settings.max_room_length} characters",
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
    principal, lease = await _admit(request, rc, rooms, name, token)
    return sse_response(rc.services, since, principal, lease)


@router.get(
    "/rooms/{room}/events", tags=[SSE_TAG], responses=STREAM, response_class=EventSourceResponse
)
async def room_events(
    room: str,
    request: Request,
    rc: RoomcastDep,
    last_event_id_header: LastEventIdHeader = None,
    last_event_id: LastEventIdQuery = None,
    name: Name = None,
    token: Token = None,
) -> EventSourceResponse:
    """One room's events as Server-Sent Events; ids are `<epoch>:<offset>`.
    A token may come as `Authorization: Bearer`, the auth cookie or `?token=`."""
    return await _stream(request, rc, [room], last_event_id_header, last_event_id, name, token)


@router.get("/events", tags=[SSE_TAG], responses=STREAM, response_class=EventSourceResponse)
async def events(
    request: Request,
    rc: RoomcastDep,
    room: Annotated[list[str], Query(min_length=1, description="repeat for several rooms")],
    last_event_id_header: LastEventIdHeader = None,
    last_event_id: LastEventIdQuery = None,
    name: Name = None,
    token: Token = None,
) -> EventSourceResponse:
    """Several rooms in one stream; ids are `<room>=<epoch>:<offset>;...`."""
    rooms = list(dict.fromkeys(room))
    return await _stream(request, rc, rooms, last_event_id_header, last_event_id, name, token)


def sse_connection(scope: Scope, receive: Receive, send: Send) -> Coroutine[Any, Any, None] | None:
    """What the standalone app runs for a ``GET`` of an event stream (``/events``,
    ``/rooms/{room}/events``), past FastAPI, as :func:`websocket_connection` does
    for /ws: the stream's coroutine, or None when FastAPI should answer (another
    path or method, or a parameter its validation refuses: FastAPI then answers
    422 in its own words). The same checks and answers as :func:`room_events` and
    :func:`events` (``_stream``); an HTTPException gets FastAPI's JSON answer.

    Otherwise an open stream keeps FastAPI's and Starlette's frames, exit stacks
    and middleware closures suspended for its life (~15 KB per idle stream,
    docs/performance.md)."""
    if scope["type"] != "http" or scope["method"] != "GET":
        return None
    path = _route_path(scope)
    query = None
    if path == "/events":
        query = QueryParams(scope["query_string"])
        rooms = list(dict.fromkeys(query.getlist("room")))
        if not rooms:
            return None
    elif path.startswith("/rooms/") and path.endswith("/events"):
        room = path[len("/rooms/") : -len("/events")]
        if not room or "/" in room:
            return None
        rooms = [room]
    else:
        return None
    query = query or QueryParams(scope["query_string"])
    name = query.get("name")
    if name is not None and not 1 <= len(name) <= MAX_NAME_LENGTH:
        return None
    header = Headers(scope=scope).get("last-event-id")
    asked = (rooms, header, query.get("last_event_id"), name, query.get("token"))
    return _serve_sse(scope, receive, send, asked)


async def _serve_sse(
    scope: Scope,
    receive: Receive,
    send: Send,
    asked: tuple[list[str], str | None, str | None, str | None, str | None],
) -> None:
    response = await _sse_response(scope, receive, asked)
    await response(scope, receive, send)


async def _sse_response(
    scope: Scope,
    receive: Receive,
    asked: tuple[list[str], str | None, str | None, str | None, str | None],
) -> Response:
    request = Request(scope, receive)
    try:
        return await _stream(request, get_roomcast(request), *asked)
    except HTTPException as exc:
        return await http_exception_handler(request, exc)
