"""The bytes roomcast puts in Redis, and back (layout: redis_scripts.py).

A payload is ``<ts> <len(sender)> <sender><data>``; a live message on a room's
channel is ``<epoch> <offset> <payload>``, or ``!`` and a notice's JSON; a
control message is ``<node id> <JSON object>``.

The decoders raise :class:`MalformedMessage` for anything else (a message
some other program published on our channels, or a bug): the broker logs it
with its channel and skips it. Decoding is the only thing they do, so an
error from them is never a delivery error.
"""

from __future__ import annotations

from typing import Any

import orjson

from ..protocol.events import Event, Notice

__all__ = ["MalformedMessage", "decode_control", "decode_live", "decode_payload", "encode_payload"]


class MalformedMessage(ValueError):
    """A message that is not in roomcast's format."""


def encode_payload(ts: float, sender: str, data: bytes) -> bytes:
    """``<ts> <len(sender)> <sender><data>``."""
    name = sender.encode()
    return b"%r %d %s%s" % (ts, len(name), name, data)


def decode_payload(payload: bytes) -> tuple[float, str, bytes]:
    ts, size, rest = payload.split(b" ", 2)
    n = int(size)
    return float(ts), rest[:n].decode(), rest[n:]


def decode_live(room: str, message: bytes) -> Event | Notice:
    """A message from ``room``'s channel: an event or a notice."""
    try:
        if message[:1] == b"!":
            fields = orjson.loads(message[1:])
            return Notice(fields.pop("type"), fields.pop("room"), fields)
        epoch, offset, payload = message.split(b" ", 2)
        ts, sender, data = decode_payload(payload)
        return Event(room, epoch.decode(), int(offset), data, sender, ts)
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise MalformedMessage(f"{type(exc).__name__}: {exc}") from None


def decode_control(message: bytes) -> tuple[bytes, dict[str, Any]]:
    """A control message: the sending node's id and the message."""
    node, _, body = message.partition(b" ")
    try:
        decoded = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise MalformedMessage(str(exc)) from None
    if not isinstance(decoded, dict):
        raise MalformedMessage(f"not a JSON object: {type(decoded).__name__}")
    return node, decoded
