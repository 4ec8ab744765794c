"""The frames the load client sends, and fast reading of the frames it receives.

Every published ``data`` is ``{"bench_t":<send time>,"seq":<n>,"pad":"xx..."}``: the
publisher's wall-clock send time (``time.time()``, the same clock in every process of one
machine) lets any subscriber compute the publish-to-receive latency, and the pad brings
the object to about ``--payload-bytes`` bytes.

Message events (roomcast's, and the frames the bench publishes to broadcast peers, which
are shaped like them) are read without a JSON decode: :func:`parse_message` finds
``"offset":`` and ``"bench_t":`` in the bytes. Key order does not matter; the only
assumption is that no string before those keys contains them, which holds for the frames
roomcast sends and the ones the bench builds.
"""

from __future__ import annotations

import json
import re
import time
from typing import Any, NamedTuple

import orjson

__all__ = [
    "Reply",
    "connect_frame",
    "data_pad",
    "message_frame",
    "parse_message",
    "parse_reply",
    "ping_frame",
    "publish_frame",
    "subscribe_frame",
    "sync_frame",
]

_MESSAGE_PREFIX = b'{"type":"message"'
_MESSAGE_TYPE = b'"type":"message"'
_OFFSET = b'"offset":'
_SENT = b'"bench_t":'
_EVENT = re.compile(
    rb'\{"type":"message","room":"[^"]*","epoch":"[^"]*","offset":(\d+),"data":\{"bench_t":([0-9.]+),'
).match
"""A message event as roomcast (and :func:`message_frame`) lays it out, offset then
the bench's data; anything else goes the slower, order-free way."""
_REPLY_PREFIX = b'{"id":'
SYNC_TYPE = b'"type":"sync"'
RESET_TYPE = b'"type":"reset"'
PRESENCE_TYPES = (b'"type":"join"', b'"type":"leave"')

SUBSCRIBE_ID = 1
CONNECT_ID = 0


def _compact(obj: object) -> str:
    return json.dumps(obj, separators=(",", ":"))


def data_pad(payload_bytes: int) -> str:
    """The pad that brings a data object to about ``payload_bytes`` bytes."""
    sample = _data(time.time(), 1_000_000, "")
    return "x" * max(0, payload_bytes - len(sample))


def _data(sent: float, seq: int, pad: str) -> str:
    return f'{{"bench_t":{sent:.6f},"seq":{seq},"pad":"{pad}"}}'


def publish_frame(request_id: int, room: str, sent: float, pad: str) -> str:
    """roomcast's publish request; ``request_id`` doubles as the data's ``seq``."""
    data = _data(sent, request_id, pad)
    return f'{{"op":"publish","id":{request_id},"room":"{room}","data":{data}}}'


def message_frame(offset: int, room: str, sent: float, pad: str) -> str:
    """A frame shaped like roomcast's message event, for servers that relay frames."""
    data = _data(sent, offset, pad)
    return (
        f'{{"type":"message","room":"{room}","epoch":"bench","offset":{offset},'
        f'"data":{data},"sender":"bench","ts":{sent:.6f}}}'
    )


def sync_frame(room: str, seq: int) -> str:
    """The barrier frame a relaying server's subscribers wait for before measuring."""
    return f'{{"type":"sync","room":"{room}","seq":{seq}}}'


def subscribe_frame(room: str) -> str:
    return _compact({"op": "subscribe", "id": SUBSCRIBE_ID, "room": room})


def connect_frame(token: str | None) -> str:
    frame: dict[str, Any] = {"op": "connect", "id": CONNECT_ID}
    if token:
        frame["token"] = token
    return _compact(frame)


def ping_frame(request_id: int) -> str:
    return _compact({"op": "ping", "id": request_id})


def _number(frame: bytes, start: int) -> bytes:
    """The JSON number starting at ``start`` (up to the next ``,`` or ``}``)."""
    end = frame.find(b",", start)
    chunk = frame[start:] if end < 0 else frame[start:end]
    brace = chunk.find(b"}")
    return chunk if brace < 0 else chunk[:brace]


def parse_message(frame: bytes) -> tuple[int, float] | None:
    """``(offset, send time)`` of a message event; None for any other frame.

    The send time is 0.0 when the data carries none (not published by the bench).
    """
    match = _EVENT(frame)
    if match is not None:  # the usual layout: one regex call instead of six finds
        return int(match[1]), float(match[2])
    if not frame.startswith(_MESSAGE_PREFIX) and frame.find(_MESSAGE_TYPE) < 0:
        return None
    at = frame.find(_OFFSET)
    if at < 0:
        return None
    at += 9  # len(_OFFSET)
    try:
        try:  # the fast path: a comma follows the number
            offset = int(frame[at : frame.find(b",", at)])
        except ValueError:
            offset = int(_number(frame, at))
        at = frame.find(_SENT, at)
        if at < 0:
            at = frame.find(_SENT)
            if at < 0:
                return offset, 0.0
        at += 10  # len(_SENT)
        try:
            sent = float(frame[at : frame.find(b",", at)])
        except ValueError:
            sent = float(_number(frame, at))
    except ValueError:
        return None
    return offset, sent


class Reply(NamedTuple):
    """One roomcast reply: its id, and either a result or an error code and message."""

    id: int | None
    ok: bool
    result: dict[str, Any]
    error: str
    message: str = ""


def parse_reply(frame: bytes) -> Reply | None:
    """A roomcast reply ``{"id":..,"ok":..}``; None for events and anything else."""
    if not frame.startswith(_REPLY_PREFIX) and b'"ok":' not in frame:
        return None
    try:
        obj = orjson.loads(frame)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(obj, dict) or "ok" not in obj:
        return None
    rid = obj.get("id")
    if obj["ok"] is True:
        result = obj.get("result")
        return Reply(rid, True, result if isinstance(result, dict) else {}, "")
    error = obj.get("error")
    if not isinstance(error, dict):
        return Reply(rid, False, {}, "error")
    return Reply(rid, False, {}, str(error.get("code", "error")), str(error.get("message", "")))
