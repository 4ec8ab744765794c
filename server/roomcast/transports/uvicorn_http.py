"""uvicorn's HTTP protocols with a deadline for the request line and headers, and
a direct writer for each response's body.

uvicorn (0.55) waits for ever for a request's headers: a client that sends
``GET /ws HTTP/1.1`` one byte every two seconds, or connects and sends nothing,
holds its socket (and a file descriptor, and memory) for as long as it likes;
400 such sockets were all still open after 20 s. These subclasses close the
connection when the request line and headers are not complete within
``handshake_timeout`` seconds (the ``handshake_timeout`` setting, default 10):

* from ``connection_made``, for the first request (a WebSocket upgrade is an
  HTTP request until its headers are in, so it is covered the same way);
* from the first byte of each later request on a keep-alive connection (an idle
  keep-alive connection is uvicorn's ``timeout_keep_alive`` business);
* from the end of a response whose request body was not read to its end (a body
  refused before it was read, api/bodylimit.py): uvicorn drops such a body as it
  arrives, and the rest of it plus the next request's headers must come within
  the deadline.

A request's body is not timed here: REST bodies have ``body_timeout``
(api/bodylimit.py). The cost is one ``TimerHandle`` per connection while its
headers are incomplete, cancelled when they are (one attribute per connection).
The connection is closed without an answer, as nginx does on
``client_header_timeout``.

Direct writes (direct.py): every HTTP/1.1 request's scope gets a
:class:`~.uvicorn_response.ResponseWriter` in ``extensions["roomcast.direct"]``,
which writes complete HTTP chunks of the response's body straight to the
transport (uvicorn_response.py says when it may, and why that is safe under h11
too). The protocols here make one per request (and :func:`lighten` the objects
an open response keeps) and tell the response being sent when flow control
pauses or resumes, when it completes, when the connection is lost, and when
the server shuts down (uvicorn's ``shutdown()`` of each connection).

This leans on uvicorn's (and h11's) private names, so direct writes are offered
only with the uvicorn releases roomcast was tested with (fastpath.TESTED), and
the first request of a process checks the names the writer reads
(:func:`missing_names`): when any is gone, no scope gets the writer (event
streams go through sse-starlette and ASGI sends) and one warning says why.

Which class runs is decided in transports/handshake.py (httptools when it is
installed, as uvicorn's ``auto`` does; h11 otherwise), which also passes the
setting. ``--http roomcast.transports.uvicorn_http:HttpToolsProtocol`` (or
``:H11Protocol``) gives a plain ``uvicorn`` command the default deadline.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, ClassVar

import h11
from uvicorn.protocols.http.flow_control import FlowControl
from uvicorn.protocols.http.h11_impl import H11Protocol as _H11
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol as _HttpTools

from .direct import DIRECT
from .handshake import DEFAULT_HANDSHAKE_TIMEOUT
from .uvicorn_response import ResponseWriter, h11_chunked, lighten, missing_names

__all__ = ["H11Protocol", "HttpToolsProtocol", "ResponseWriter", "missing_names"]

log = logging.getLogger("roomcast.sse")


class _Deadline(asyncio.Protocol):
    """The deadline for one connection's request headers. Mixed into a uvicorn HTTP
    protocol (first in the bases), which provides ``loop`` and ``transport``.
    ``handshake_timeout`` may be set on an instance until its connection is made
    (transports/handshake.py does)."""

    loop: asyncio.AbstractEventLoop
    transport: asyncio.Transport
    handshake_timeout: float = DEFAULT_HANDSHAKE_TIMEOUT
    _deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm(self) -> None:
        if self._deadline is None:
            self._deadline = self.loop.call_later(self.handshake_timeout, self._expired)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _expired(self) -> None:
        self._deadline = None
        if not self.transport.is_closing():
            self.transport.close()


class _Responses(asyncio.Protocol):
    """Gives each HTTP/1.1 request's scope a :class:`ResponseWriter` and tells the
    watched one when flow control, the response or the connection changes. Mixed
    into a uvicorn HTTP protocol (which provides ``transport`` and ``flow``)."""

    transport: asyncio.Transport
    flow: FlowControl
    current: ResponseWriter | None = None
    """The writer of the response being sent (at most one at a time on a
    connection): from its start to its completion."""
    direct_ok: ClassVar[bool | None] = None
    """Requests get a writer: the uvicorn release is a tested one and its
    instances have the names the writer reads (checked at the first request of
    the process; None before)."""

    def chunked(self, cycle: Any) -> bool:
        """The response of ``cycle`` is being sent with chunked framing."""
        raise NotImplementedError

    def _give_writer(self, cycle: Any, http11: bool) -> None:
        ok = _Responses.direct_ok
        if ok is None:
            ok = _check(self, cycle)
        if not ok:
            return
        lighten(self, cycle)
        if http11:
            scope = cycle.scope
            extensions = scope.get("extensions")
            if extensions is None:
                extensions = scope["extensions"] = {}
            extensions[DIRECT] = ResponseWriter(self, cycle)

    def _changed(self) -> None:
        writer = self.current
        if writer is not None:
            writer.changed()

    def pause_writing(self) -> None:
        super().pause_writing()
        self._changed()

    def resume_writing(self) -> None:
        super().resume_writing()
        self._changed()

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        writer, self.current = self.current, None
        if writer is not None:
            writer.changed()
            writer.lost()

    def on_response_complete(self) -> None:
        writer, self.current = self.current, None  # (a pipelined response may start)
        super().on_response_complete()  # type: ignore[misc]
        if writer is not None:
            writer.changed()

    def shutdown(self) -> None:
        """uvicorn's, then the current response's ``shutdown`` (direct.py)."""
        super().shutdown()  # type: ignore[misc]
        if self.current is not None:
            self.current.shutdown()


def _check(protocol: _Responses, cycle: Any) -> bool:
    """Set ``direct_ok`` from the uvicorn release and the first request's protocol
    and cycle; log once what is missing."""
    from .fastpath import untested

    why = untested(["uvicorn"])
    if why is None:
        missing = missing_names(protocol, cycle)
        if missing:
            base = _H11 if isinstance(protocol, _H11) else _HttpTools
            why = f"uvicorn's {base.__name__} changed (no {', '.join(missing)})"
    _Responses.direct_ok = why is None
    if why is not None:
        log.warning(
            "SSE fast path off: %s; event streams are sent through ASGI (docs/operations.md)", why
        )
    return why is None


class HttpToolsProtocol(_Deadline, _Responses, _HttpTools):
    """uvicorn's httptools protocol with the headers deadline and direct writers
    (see the module)."""

    def chunked(self, cycle: Any) -> bool:
        return cycle.chunked_encoding is True

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._arm()  # a later request on a keep-alive connection (the first is armed)

    def on_headers_complete(self) -> None:
        self._disarm()  # before an upgrade hands the transport to the WebSocket protocol
        cycle = self.cycle
        super().on_headers_complete()
        if self.cycle is not cycle:  # a request for the app (not an upgrade)
            # (uvicorn's httptools protocol frames even an HTTP/1.0 response chunked)
            self._give_writer(self.cycle, self.scope["http_version"] == "1.1")

    def on_response_complete(self) -> None:
        super().on_response_complete()
        cycle = self.cycle
        if cycle.response_complete and cycle.more_body and not self.transport.is_closing():
            self._arm()  # the rest of a refused body is being dropped


class H11Protocol(_Deadline, _Responses, _H11):
    """uvicorn's h11 protocol with the headers deadline and direct writers (see
    the module). h11 has no callback per header: a request's headers are complete
    when uvicorn made a new scope for it."""

    def chunked(self, cycle: Any) -> bool:
        conn = cycle.conn
        return conn.our_state is h11.SEND_BODY and type(conn._writer) is h11_chunked

    def data_received(self, data: bytes) -> None:
        scope = self.scope
        if self.conn.their_state is h11.IDLE:
            self._arm()  # the first bytes of a request
        super().data_received(data)
        if self.scope is not scope:
            self._disarm()  # a request's headers are in (an upgrade's too)

    def handle_events(self) -> None:
        cycle = self.cycle
        super().handle_events()  # from data_received, or for a pipelined request
        if self.cycle is not cycle:  # a request for the app (not an upgrade)
            self._give_writer(self.cycle, self.conn.their_http_version == b"1.1")

    def on_response_complete(self) -> None:
        scope = self.scope
        super().on_response_complete()  # may go on to a pipelined request
        if self.scope is not scope:
            self._disarm()
        elif self.conn.their_state is h11.SEND_BODY and not self.transport.is_closing():
            self._arm()  # the rest of a refused body is being dropped
