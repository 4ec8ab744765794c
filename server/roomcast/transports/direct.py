"""The ``roomcast.direct`` scope extension: what a WebSocket server that can
write roomcast's pre-built frames hands the application.

roomcast's uvicorn protocol (uvicorn_ws.py) puts a :class:`DirectWriter` in
``scope["extensions"][DIRECT]`` of every WebSocket connection; under any other
server (or uvicorn's own protocol, which roomcast falls back to when its own
cannot be built: fastpath.py) the key is absent and every frame goes through
ASGI ``send``.

This module imports nothing of uvicorn or websockets (only the hub's
:class:`~roomcast.hub.subscriber.DirectWrite` interface), so the transports and
``import roomcast`` never need uvicorn's private modules.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from ..hub.subscriber import DirectWrite

__all__ = ["DIRECT", "DirectWriter"]

DIRECT = "roomcast.direct"
"""The key of :class:`DirectWriter` in a WebSocket scope's ``extensions``."""


class DirectWriter(DirectWrite, Protocol):
    """The extension: :class:`DirectWrite` (``ready``, ``write``), plus what the
    application may only use once it has accepted the connection.

    The application must check :attr:`usable` before handing the writer to a
    subscriber, call :meth:`write` only while :meth:`ready` says so, and write
    only complete frames (the server writes nothing of its own in between)."""

    usable: bool
    """No extension (per-message compression) negotiated: shared pre-built frames
    may be written to this connection."""

    on_shutdown: Callable[[], object] | None
    """Set by the application to close the connection itself when the server
    shuts down (roomcast's drain: queued frames, then 3000); None: the server's
    own close (uvicorn: 1012)."""
