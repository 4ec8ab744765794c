"""The direct writer of one HTTP response under roomcast's uvicorn HTTP protocols
(uvicorn_http.py), and the lighter objects an open response keeps.

:class:`ResponseWriter` is the :class:`~.direct.DirectResponse` in the scope of
every HTTP/1.1 request: it writes complete HTTP chunks of the response's body to
the transport at once, bypassing ASGI (an SSE stream's events: transports/sse.py).
uvicorn writes the output of every ASGI ``send`` at once too, so chunks on the
wire are in the order of the writes. The writer is ready only while the response
has started chunked, is not complete, its connection is open and not paused by
flow control, and no body the application passed to ``send`` is still on its way
(a middleware may hold one back, or change it: :meth:`ResponseWriter.send` wraps
the cycle's ``send`` to see each body arrive); the protocol tells it when any of
that changes, and when the connection is lost or the server shuts down.

Under h11 the chunks go behind h11's back, which is safe: h11 frames a chunked
body with a stateless ``ChunkedWriter`` (it counts bytes only for a
``Content-Length`` body) and ends it with the last chunk whatever was written
before; the writer is ready only while h11's writer is that one.

Memory: an idle SSE stream is an open response, so what uvicorn keeps per
request and connection counts. :func:`lighten` swaps its ``asyncio.Event``
objects (each with a deque) and httptools' empty pipeline deque for
:class:`_Event` and :class:`_Pipeline`: ~2.4 KB less per stream.

This leans on uvicorn's and h11's private names: :func:`missing_names` lists
those it reads, which uvicorn_http.py checks at a process's first request.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from typing import Any, Protocol

import h11
from uvicorn.protocols.http.flow_control import FlowControl
from uvicorn.protocols.http.h11_impl import H11Protocol as _H11

from ..protocol.httpchunk import http_chunk

__all__ = ["Connection", "ResponseWriter", "h11_chunked", "lighten", "missing_names"]

h11_chunked: type[Any] | None
try:
    from h11._writers import ChunkedWriter

    h11_chunked = ChunkedWriter
except ImportError:  # h11 changed: missing_names() turns direct writes off under h11
    h11_chunked = None


class Connection(Protocol):
    """What :class:`ResponseWriter` uses of its protocol (uvicorn_http.py)."""

    transport: asyncio.Transport
    flow: FlowControl
    current: ResponseWriter | None

    def chunked(self, cycle: Any) -> bool: ...


class ResponseWriter:
    """The :class:`~.direct.DirectResponse` of one request's response: complete
    HTTP chunks written to the transport. Made by the protocol with the request's
    cycle, whose ASGI ``send`` it wraps to see the response start and the bodies
    arrive (:meth:`send`). From the response start on it is the protocol's
    :attr:`Connection.current` writer, which hears of the connection's changes."""

    __slots__ = (
        "_awaiting",
        "_changed",
        "_cycle",
        "_lost",
        "_protocol",
        "_send",
        "_shutdown",
        "_started",
    )

    def __init__(self, protocol: Connection, cycle: Any) -> None:
        self._protocol = protocol
        self._cycle = cycle
        self._send: Callable[[Any], Any] = cycle.send
        self._started = False  # the response start went through send() below
        self._awaiting: bytes | None = None  # a body the application is sending
        self._changed: Callable[[], object] | None = None
        self._lost: Callable[[], object] | None = None
        self._shutdown: Callable[[], object] | None = None
        cycle.send = self.send  # run_asgi passes self.send to the app when it starts

    @property
    def transport(self) -> asyncio.Transport:
        """The connection's own (asked for when readiness changes, not per delivery)."""
        return self._protocol.transport

    async def send(self, message: Any) -> None:
        """The cycle's ASGI ``send``, which the application calls: uvicorn's, then
        a note of what readiness depends on."""
        await self._send(message)
        if message["type"] == "http.response.start":
            self._started = True
            self._protocol.current = self
            self.changed()
        elif self._awaiting is not None and message.get("body") is self._awaiting:
            self._awaiting = None
            self.changed()

    def ready(self) -> bool:
        cycle = self._cycle
        protocol = self._protocol
        return (
            self._started
            and self._awaiting is None
            and not cycle.response_complete
            and not cycle.disconnected
            and not protocol.flow.write_paused
            and not protocol.transport.is_closing()
            and protocol.chunked(cycle)
        )

    def encode(self, text: str) -> bytes:
        return http_chunk(text.encode())

    def sending(self, body: bytes) -> None:
        self._awaiting = body
        self.changed()

    def watch(self, changed: Callable[[], object] | None) -> None:
        self._changed = changed

    def notify(
        self, *, lost: Callable[[], object] | None, shutdown: Callable[[], object] | None
    ) -> None:
        self._lost, self._shutdown = lost, shutdown
        if self.gone():
            self.lost()

    def gone(self) -> bool:
        """The connection is lost, or closing before the response is complete."""
        cycle = self._cycle
        return not cycle.response_complete and (
            cycle.disconnected or self._protocol.transport.is_closing()
        )

    def changed(self) -> None:
        """Readiness may have changed: tell the watcher."""
        changed = self._changed
        if changed is not None:
            changed()

    def lost(self) -> None:
        """The protocol's, when the connection is lost: ``lost`` (once)."""
        lost, self._lost = self._lost, None
        if lost is not None:
            lost()

    def shutdown(self) -> None:
        """The protocol's, when the server shuts down."""
        if self._shutdown is not None:
            self._shutdown()


def missing_names(protocol: Any, cycle: Any) -> list[str]:
    """What ``protocol`` (one of this module's) and its request's ``cycle`` lack of
    the uvicorn and h11 names :class:`ResponseWriter` relies on (empty: all there)."""
    state, flow = vars(cycle), getattr(protocol, "flow", None)
    names = [
        *((f"cycle.{name}", isinstance(state.get(name), bool))
          for name in ("response_started", "response_complete", "disconnected")),
        ("cycle.send", callable(getattr(cycle, "send", None))),
        ("cycle.scope", isinstance(state.get("scope"), dict)),
        ("flow.write_paused (a FlowControl)", isinstance(flow, FlowControl)
         and isinstance(vars(flow).get("write_paused"), bool)),
        ("transport", "transport" in vars(protocol)),
    ]  # fmt: skip
    if isinstance(protocol, _H11):
        conn = state.get("conn")
        names += [
            ("cycle.conn (an h11.Connection)", isinstance(conn, h11.Connection)),
            ("h11's Connection._writer", "_writer" in vars(conn or object)),
            ("h11._writers.ChunkedWriter", h11_chunked is not None),
        ]
    else:
        names.append(("cycle.chunked_encoding", "chunked_encoding" in state))
    return [name for name, present in names if not present]


class _Event:
    """What uvicorn uses of ``asyncio.Event`` (``set``, ``clear``, ``is_set``,
    ``wait``) for a request's ``message_event`` and a connection's writable flag,
    without the deque (and instance dict) an ``asyncio.Event`` keeps: ~1.7 KB less
    per open response, which an idle event stream is."""

    __slots__ = ("_set", "_waiters")

    def __init__(self, value: bool) -> None:
        self._set = value
        self._waiters: list[asyncio.Future[None]] | None = None

    def is_set(self) -> bool:
        return self._set

    def set(self) -> None:
        self._set = True
        waiters, self._waiters = self._waiters, None
        for waiter in waiters or ():
            if not waiter.done():
                waiter.set_result(None)

    def clear(self) -> None:
        self._set = False

    async def wait(self) -> bool:
        if self._set:
            return True
        waiter = asyncio.get_running_loop().create_future()
        if self._waiters is None:
            self._waiters = []
        self._waiters.append(waiter)
        try:
            await waiter
        finally:
            if self._waiters is not None and waiter in self._waiters:
                self._waiters.remove(waiter)
        return True


class _Pipeline(list[Any]):
    """What uvicorn's httptools protocol uses of its ``deque`` of pipelined requests
    (``appendleft``, ``pop``, truth): an empty list is ~700 bytes less."""

    def appendleft(self, item: Any) -> None:
        self.insert(0, item)


def lighten(protocol: Connection, cycle: Any) -> None:
    """Swap uvicorn's ``asyncio.Event`` objects (the request's ``message_event``,
    the connection's writable flag) and httptools' empty pipeline ``deque`` for
    :class:`_Event` and :class:`_Pipeline`, while nothing waits on them (the
    request's task has not started; on a connection's first request, no other
    has). Each only where it is what this module knows."""
    event = vars(cycle).get("message_event")
    if type(event) is asyncio.Event:
        cycle.message_event = _Event(event.is_set())
    flow = vars(protocol.flow)
    writable = flow.get("_is_writable_event")
    if type(writable) is asyncio.Event and writable.is_set() and not protocol.flow.write_paused:
        flow["_is_writable_event"] = _Event(True)
    pipeline = vars(protocol).get("pipeline")
    if type(pipeline) is deque and not pipeline:
        protocol.pipeline = _Pipeline()  # type: ignore[attr-defined]
