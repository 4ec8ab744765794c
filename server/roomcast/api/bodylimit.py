"""Request bodies: bounded in size and time, and unread until the caller's
credentials hold.

FastAPI reads and parses a route's body before it solves the route's
dependencies, so a check in a dependency (the caller's credentials, a size)
comes after the whole body is in memory. :class:`BodyGuard` runs before
routing reaches FastAPI's handler, on every HTTP request of roomcast's
:attr:`Roomcast.api_router <roomcast.runtime.Roomcast.api_router>` (REST and
SSE; probes and pages take no body), standalone and mounted alike:

1. A ``Content-Length`` over ``max_body_bytes`` is refused 413 before a byte of
   the body is read.
2. With roomcast's own authentication (tokens, API keys), a request that carries
   a body must present credentials that hold (api/security.py): a wrong key or
   token is refused 401 before the body is read, and so is a caller who may not
   write anywhere (401 anonymous, 403 with credentials), since every route of
   roomcast that takes a body is a write (publish, or an administrator's). The
   principal is kept in the scope for :func:`~roomcast.api.security.get_caller`.
   When the application authenticates, roomcast cannot know its credentials:
   its dependencies run after the body as usual, and only the limits apply.
3. While the route reads the body, it is counted (a chunked body has no
   ``Content-Length``): past ``max_body_bytes`` the read fails with 413; and a
   read that waits ``body_timeout`` seconds without a byte fails with 408.

A refusal before the body (1, 2), or past the limit while reading it (3), keeps
the connection: uvicorn drops the unread body as it arrives (roomcast's HTTP
protocol, transports/uvicorn_http.py, closes the connection if that and the
next request's headers take longer than ``handshake_timeout``). Closing at once
would reset the connection under a client still sending, which then never reads
the 413 (nginx's lingering close does the same). A body that stalls (408)
answers with ``Connection: close``: nothing more is coming.

Refusals are ``HTTPException``\\ s, so the application's exception handlers
render them like any other. Nothing here runs on the WebSocket or for
requests without a body beyond one look at the headers.

Obligations: :class:`GuardedRouter` needs FastAPI's router tree (0.137 and
later), where an included router's :meth:`~fastapi.APIRouter.handle` is called
for each request it serves; tests/api/test_bodylimit.py checks it mounted.
"""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, HTTPException, status
from starlette.datastructures import Headers
from starlette.types import Message, Receive, Scope, Send

from ..auth import Authority
from ..settings import Settings
from .security import CALLER, denied, rest_caller

__all__ = ["BODY_ENVELOPE", "BodyGuard", "GuardedRouter", "body_guard"]

BODY_ENVELOPE = 16 * 1024
"""Bytes of JSON a body may carry around ``max_payload_bytes`` of data when the
``max_body_bytes`` setting is unset."""

CLOSE = {"Connection": "close"}


def _declared(headers: list[tuple[bytes, bytes]]) -> tuple[int | None, bool]:
    """(the declared ``Content-Length``, whether the request has a body at all)."""
    length: int | None = None
    chunked = False
    for name, value in headers:
        if name == b"content-length":
            try:
                length = max(length or 0, int(value))
            except ValueError:  # the HTTP server refuses these; count the body then
                chunked = True
        elif name == b"transfer-encoding":
            chunked = True
    return length, chunked or bool(length)


class BodyGuard:
    """The checks of this module for one Roomcast: its ``authority``, a body of at
    most ``max_bytes`` bytes, and at most ``timeout`` seconds between its bytes."""

    def __init__(self, authority: Authority, *, max_bytes: int, timeout: float) -> None:
        self.authority = authority
        self.max_bytes = max_bytes
        self.timeout = timeout

    async def admit(self, scope: Scope, receive: Receive) -> Receive:
        """The ``receive`` the route should read the body through; raises
        HTTPException (413, 401, 403, 503) to refuse the request before its body."""
        length, has_body = _declared(scope["headers"])
        if not has_body:
            return receive
        if length is not None and length > self.max_bytes:
            raise HTTPException(
                status.HTTP_413_CONTENT_TOO_LARGE,
                f"the body is {length} bytes; the limit is {self.max_bytes}",
            )
        authority = self.authority
        if not authority.host_authenticates:
            caller = await rest_caller(authority, Headers(scope=scope))
            if not authority.may_write(caller):
                raise denied(caller, "publish or administer")  # 401 anonymous, else 403
            scope[CALLER] = caller
        return self.limited(receive)

    def limited(self, receive: Receive) -> Receive:
        """``receive``, counted against ``max_bytes`` and timed out after ``timeout``
        seconds without a message, until the body's last message."""
        limit, timeout = self.max_bytes, self.timeout
        received = 0
        done = False

        async def receive_body() -> Message:
            nonlocal received, done
            if done:  # after the body: http.disconnect, whenever it comes
                return await receive()
            try:
                async with asyncio.timeout(timeout):
                    message = await receive()
            except TimeoutError:
                done = True
                raise HTTPException(
                    status.HTTP_408_REQUEST_TIMEOUT,
                    f"no byte of the request body for {timeout:g} s",
                    headers=CLOSE,
                ) from None
            if message["type"] != "http.request":
                done = True
                return message
            received += len(message.get("body", b""))
            if received > limit:
                done = True
                raise HTTPException(
                    status.HTTP_413_CONTENT_TOO_LARGE,
                    f"the body is over the limit of {limit} bytes",
                )
            done = not message.get("more_body", False)
            return message

        return receive_body


def body_guard(settings: Settings, authority: Authority) -> BodyGuard:
    """The guard the settings ask for (``max_body_bytes``, ``body_timeout``)."""
    limit = settings.max_body_bytes or settings.max_payload_bytes + BODY_ENVELOPE
    return BodyGuard(authority, max_bytes=limit, timeout=settings.body_timeout)


class GuardedRouter(APIRouter):
    """An APIRouter whose HTTP requests pass ``guard`` before its routes see them:
    included in an app (or in another router), and mounted as an ASGI app."""

    def __init__(self, guard: BodyGuard, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.guard = guard

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            receive = await self.guard.admit(scope, receive)
        await super().handle(scope, receive, send)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            receive = await self.guard.admit(scope, receive)
        await super().__call__(scope, receive, send)
