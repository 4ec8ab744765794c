"""RFC 6455 frames the server sends, built once and shared by every connection.

A server's frames are not masked, so one event's text frame is the same bytes
for every subscriber: the hub builds it once per event and hands the same
object to every connection that can take it directly (no compression
extension negotiated; see transports/uvicorn_ws.py).
"""

from __future__ import annotations

__all__ = ["text_frame"]

_FIN_TEXT = 0x81


def text_frame(payload: bytes) -> bytes:
    """A final, unmasked text frame carrying ``payload`` (UTF-8)."""
    size = len(payload)
    if size < 126:
        return bytes((_FIN_TEXT, size)) + payload
    if size < 1 << 16:
        return bytes((_FIN_TEXT, 126)) + size.to_bytes(2, "big") + payload
    return bytes((_FIN_TEXT, 127)) + size.to_bytes(8, "big") + payload
