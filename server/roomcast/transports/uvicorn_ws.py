"""uvicorn's websockets-sansio protocol, with a direct writer for the hub.

Through ASGI every frame is a ``send`` call: a task switch into the
connection's writer, Starlette's state checks, uvicorn's protocol, then one
``transport.write``. For fan-out that per-connection, per-message path costs
more than the write itself. This subclass adds one thing: a
:class:`DirectWriter` in the connection's scope (``extensions`` key
``roomcast.direct``) that writes a complete, pre-built frame to the transport
at once, and tells whether that is allowed now:

* the handshake is done, no close frame was sent or received, the peer is
  still connected, and
* the transport is writable (uvicorn clears ``writable`` when asyncio pauses
  writing at the high-water mark, so backpressure still reaches the outbox:
  while paused, frames queue and a peer that stops reading is evicted), and
* no extension (per-message compression) was negotiated: only then are the
  server's frames identical for every connection.

Everything else (accept, replies, pings, close) goes through uvicorn as usual.
uvicorn writes the output of every protocol action at once, so nothing of its
own is waiting to be written when a direct write goes out: the frame order on
the wire is the order of the writes.
"""

from __future__ import annotations

from typing import Any

from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.protocol import State

__all__ = ["DIRECT", "DirectWriter", "RoomcastWebSocketProtocol"]

DIRECT = "roomcast.direct"


class DirectWriter:
    __slots__ = ("_protocol",)

    def __init__(self, protocol: WebSocketsSansIOProtocol) -> None:
        self._protocol = protocol

    def ready(self) -> bool:
        p = self._protocol
        return (
            p.writable.is_set()
            and p.handshake_complete
            and not p.close_sent
            and not p.disconnected
            and p.conn.state is State.OPEN
        )

    def write(self, data: bytes) -> None:
        self._protocol.transport.write(data)


class RoomcastWebSocketProtocol(WebSocketsSansIOProtocol):
    """Pass as uvicorn's ``ws`` (cli.py does)."""

    def handle_connect(self, event: Any) -> None:
        super().handle_connect(event)
        scope = getattr(self, "scope", None)
        if scope is not None and not self.conn.extensions:
            scope["extensions"][DIRECT] = DirectWriter(self)
