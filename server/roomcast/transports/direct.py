"""The ``roomcast.direct`` scope extension: what a server that can write
roomcast's pre-built frames hands the application.

* WebSocket: roomcast's uvicorn protocol (uvicorn_ws.py) puts a
  :class:`DirectWriter` in ``scope["extensions"][DIRECT]`` of every WebSocket
  connection.
* HTTP: roomcast's uvicorn HTTP protocols (uvicorn_http.py) put a
  :class:`DirectResponse` in ``scope["extensions"][DIRECT]`` of every HTTP/1.1
  request: the response's body, written as HTTP chunks straight to the
  transport. The SSE transport hands it to a single-room stream's subscriber, so
  the hub writes each event's shared chunk (``Event.sse_wire``) to it.

Under any other server (or uvicorn's own protocols, which roomcast falls back to
when its own cannot be used: fastpath.py, handshake.py, or when uvicorn's
private names changed) the key is absent and everything goes through ASGI
``send``.

This module imports nothing of uvicorn or websockets (only the hub's
:class:`~roomcast.hub.subscriber.DirectWrite` interface), so the transports and
``import roomcast`` never need uvicorn's private modules.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from ..hub.subscriber import DirectWrite

__all__ = ["DIRECT", "DirectResponse", "DirectWriter"]

DIRECT = "roomcast.direct"
"""The key of :class:`DirectWriter` in a WebSocket scope's ``extensions``, and of
:class:`DirectResponse` in an HTTP scope's."""


class DirectWriter(DirectWrite, Protocol):
    """The extension: :class:`DirectWrite` (``transport``, ``ready``, ``encode``,
    ``watch``), plus what the application may only use once it has accepted the
    connection.

    The application must check :attr:`usable` before handing the writer to a
    subscriber, write to :attr:`transport` only while :meth:`ready` says so (the
    ``watch`` callback says when that may have changed), and write only complete
    frames (the server writes nothing of its own in between)."""

    usable: bool
    """No extension (per-message compression) negotiated: shared pre-built frames
    may be written to this connection."""

    on_shutdown: Callable[[], object] | None
    """Set by the application to close the connection itself when the server
    shuts down (roomcast's drain: queued frames, then 3000); None: the server's
    own close (uvicorn: 1012)."""


class DirectResponse(DirectWrite, Protocol):
    """The extension in an HTTP/1.1 request's scope: :class:`DirectWrite` for the
    response's body. :meth:`encode` makes one HTTP chunk; :meth:`ready` is true
    only while the response has started with ``Transfer-Encoding: chunked``, is
    not complete, its connection is neither lost nor closing, writing is not
    paused by flow control, and nothing the application sent through ASGI is
    still on its way to the server (:meth:`sending`). It is never true for an
    HTTP/1.0 request, a HEAD, or a response with a ``Content-Length``.

    The application must write only complete chunks (the server writes nothing of
    its own in between, and ends the body with the last chunk when the
    application sends ``more_body: False``), and stop writing before it ends the
    response (``ready`` is false from then on)."""

    def sending(self, body: bytes) -> None:
        """The application is about to pass ``body`` to ASGI ``send``: :meth:`ready`
        stays false until the server has written that very ``bytes`` object. A
        middleware that holds a body back (Starlette's ``BaseHTTPMiddleware``
        hands it to another task) cannot be overtaken by a direct write; one that
        changes the body (compresses it, copies it) keeps direct writes off."""

    def notify(
        self, *, lost: Callable[[], object] | None, shutdown: Callable[[], object] | None
    ) -> None:
        """Call ``lost()`` once when the connection is lost before the response is
        complete (at once if it already is), and ``shutdown()`` when the server
        shuts down with the response still open (uvicorn's shutdown of a
        connection: it then waits for the response to end). The application can
        then do without a task of its own that waits for ``http.disconnect``."""
