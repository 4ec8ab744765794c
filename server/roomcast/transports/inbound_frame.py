"""A client's frame read without websockets' parser, in the one case that is
most of them: a chunk of received bytes that is exactly one complete text frame.

A client's request is one small text frame, and it usually arrives alone in one
``data_received`` call. websockets' parser (a generator per connection, a
generator per frame, a ``yield`` per header field) then costs more than the rest
of reading it; :func:`whole_text_frame` reads such a chunk in a few byte
operations. Whoever uses it must use it only where websockets' parser would
produce the same single frame and nothing else (uvicorn_ws.py): the parser is
between frames (nothing of a frame buffered), no fragmented message is under
way, the connection is open, no extension was negotiated. Anything else (a
fragment, a control frame, two frames or half of one, a reserved bit, an
unmasked frame, a payload over the limit) returns None and goes to websockets'
parser, which answers it as before.
"""

from __future__ import annotations

try:
    from websockets.speedups import apply_mask
except ImportError:  # websockets without its C extension: its own fallback
    from websockets.utils import apply_mask

__all__ = ["whole_text_frame"]

_FIN_TEXT = 0x81  # FIN, no reserved bit, opcode 1 (text)
_MASKED = 0x80


def whole_text_frame(data: bytes, max_size: int | None) -> bytes | None:
    """The unmasked payload when ``data`` is exactly one complete, final, masked
    text frame with no reserved bit set, whose payload is at most ``max_size``
    bytes (None: no limit) and shorter than 64 KiB; else None. The payload is not
    checked for UTF-8: decoding it is the caller's."""
    if len(data) < 6 or data[0] != _FIN_TEXT:
        return None
    length = data[1] ^ _MASKED  # 0-127 only when the mask bit is set
    start = 6
    if length == 126:
        if len(data) < 8:
            return None
        length = (data[2] << 8) | data[3]
        start = 8
    elif length > 126:  # unmasked (the bit was clear), or a 64-bit length
        return None
    if start + length != len(data) or (max_size is not None and length > max_size):
        return None
    return apply_mask(data[start:], data[start - 4 : start])
