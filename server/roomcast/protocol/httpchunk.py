"""HTTP/1.1 chunks the server sends on an SSE stream, built once and shared.

An SSE stream's response has no length, so uvicorn sends its body with
``Transfer-Encoding: chunked``: every piece of it is a chunk, its size in hex,
CRLF, the bytes, CRLF (RFC 9112, 7.1). An event's SSE text is the same for every
stream that carries it unchanged, so the hub builds the chunk once per event and
a stream that can take it directly (transports/uvicorn_http.py) writes those
bytes to its transport. Several chunks written together are a valid body too.
"""

from __future__ import annotations

__all__ = ["http_chunk"]


def http_chunk(payload: bytes) -> bytes:
    """``payload`` as one chunk of a chunked HTTP/1.1 body (empty: the last chunk)."""
    return b"%x\r\n%b\r\n" % (len(payload), payload)
