"""uvicorn's HTTP protocols with a deadline for the request line and headers.

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

Which class runs is decided in transports/handshake.py (httptools when it is
installed, as uvicorn's ``auto`` does; h11 otherwise), which also passes the
setting. ``--http roomcast.transports.uvicorn_http:HttpToolsProtocol`` (or
``:H11Protocol``) gives a plain ``uvicorn`` command the default deadline.
"""

from __future__ import annotations

import asyncio

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol as _H11
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol as _HttpTools

from .handshake import DEFAULT_HANDSHAKE_TIMEOUT

__all__ = ["H11Protocol", "HttpToolsProtocol"]


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


class HttpToolsProtocol(_Deadline, _HttpTools):
    """uvicorn's httptools protocol with the headers deadline (see the module)."""

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._arm()  # a later request on a keep-alive connection (the first is armed)

    def on_headers_complete(self) -> None:
        self._disarm()  # before an upgrade hands the transport to the WebSocket protocol
        super().on_headers_complete()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        cycle = self.cycle
        if cycle.response_complete and cycle.more_body and not self.transport.is_closing():
            self._arm()  # the rest of a refused body is being dropped


class H11Protocol(_Deadline, _H11):
    """uvicorn's h11 protocol with the headers deadline (see the module). h11 has
    no callback per header: a request's headers are complete when uvicorn made a
    new scope for it."""

    def data_received(self, data: bytes) -> None:
        scope = self.scope
        if self.conn.their_state is h11.IDLE:
            self._arm()  # the first bytes of a request
        super().data_received(data)
        if self.scope is not scope:
            self._disarm()  # a request's headers are in (an upgrade's too)

    def on_response_complete(self) -> None:
        scope = self.scope
        super().on_response_complete()  # may go on to a pipelined request
        if self.scope is not scope:
            self._disarm()
        elif self.conn.their_state is h11.SEND_BODY and not self.transport.is_closing():
            self._arm()  # the rest of a refused body is being dropped
