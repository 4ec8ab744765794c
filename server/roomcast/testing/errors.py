"""What the test kit raises on purpose, besides the standard library's and websockets'.

::

    RoomcastError                      (roomcast.protocol.errors)
     +-- ReplyError                    an error reply to a request (code, message, reply)
     +-- LiveServerError               the app under LiveServer did not start

Also raised, unchanged: :class:`TimeoutError` (every wait has a timeout; the
message says what was awaited), websockets' ``InvalidStatus`` (a handshake the
server refused with an HTTP status) and ``ConnectionClosed`` (the server closed
the connection while a reply was awaited).
"""

from __future__ import annotations

from typing import Any

from ..protocol.errors import RoomcastError

__all__ = ["LiveServerError", "ReplyError"]


class ReplyError(RoomcastError):
    """The server answered a request with ``{"ok": false, "error": {...}}``.

    ``code`` is the protocol's error code (``"forbidden"``, ``"room_invalid"``,
    ...; docs/protocol.md), ``message`` its text, ``reply`` the whole reply frame.
    """

    def __init__(self, reply: dict[str, Any]) -> None:
        error = reply.get("error") or {}
        self.code: str = str(error.get("code", ""))
        self.message: str = str(error.get("message", ""))
        self.reply = reply
        super().__init__(f"{self.code}: {self.message}")


class LiveServerError(RoomcastError):
    """uvicorn did not start the app: the message holds the errors uvicorn logged
    (a lifespan that raised, an import string that does not import, ...)."""
