"""The peer log: one line about something a peer did wrong, rate-limited per process.

A peer's bad input is the peer's problem, not the server's: an invalid UTF-8
text frame, an HTTP request that does not parse, an event stream it stopped
reading, a WebSocket from an origin that is not allowed. Anyone can send those
at socket speed, without credentials, so each is written as one line at INFO
(never a traceback) through :data:`PEER_LOG`, which writes at most
``peer_log_per_minute`` of them a minute per process (0: none) and counts the
rest in ``STATS.peer_log_dropped`` (``roomcast_peer_log_dropped_total`` in
/metrics). The first line written after a minute with drops is preceded by one
WARNING that says how many were dropped.

A real server error (a bug) never goes through here: it is logged with its
traceback as before.

uvicorn logs some peer errors itself, on ``uvicorn.error``. :class:`PeerNoise`
is the logging filter (``log_config`` puts it on that logger) that sends those
through the peer log instead:

* "Invalid HTTP request received." and "Unsupported upgrade request.": one
  peer-log line each;
* "Invalid UTF-8 sequence received from client." (with a traceback): one line;
  roomcast's own WebSocket protocol never logs it (transports/uvicorn_ws.py);
* "Exception in ASGI application" whose exception is :class:`PeerStalled`
  (transports/sse.py raises it for a stream whose peer stopped reading, once
  it has written the peer-log line): dropped.

Everything else on ``uvicorn.error`` passes unchanged.

Obligations: the Roomcast lifespan calls :meth:`PeerLog.configure` with the
setting. Callers pass the peer's address (and the connection id when there is
one) as ``extra`` fields, never the bytes the peer sent.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from .hub.stats import STATS
from .protocol.errors import RoomcastError

__all__ = ["PEER_LOG", "PeerLog", "PeerNoise", "PeerStalled", "only", "peer_address"]

WINDOW = 60.0
"""Seconds of one rate-limit window (the setting counts lines per minute)."""

_log = logging.getLogger("roomcast.peer")


class PeerStalled(RoomcastError, TimeoutError):
    """A response whose peer stopped reading: raised to the server so that it drops
    the connection. Already in the peer log; :class:`PeerNoise` drops the server's
    "Exception in ASGI application" about it."""


def peer_address(client: tuple[str, int] | list[object] | None) -> str | None:
    """``host:port`` of an ASGI scope's ``client``, or None."""
    if not client:
        return None
    return f"{client[0]}:{client[1]}"


class PeerLog:
    """At most ``per_minute`` lines per window of :data:`WINDOW` seconds; the rest
    are counted in ``STATS.peer_log_dropped``. A line below the logger's level
    is neither written nor counted. Not thread-safe: one event loop per process."""

    __slots__ = ("_clock", "_dropped_in_window", "_per_minute", "_used", "_window_end")

    def __init__(self, per_minute: int = 60, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._per_minute = per_minute
        self._used = 0
        self._dropped_in_window = 0
        self._window_end = float("-inf")

    @property
    def per_minute(self) -> int:
        return self._per_minute

    def configure(self, per_minute: int) -> None:
        """Set the limit (the setting ``peer_log_per_minute``); a new window starts."""
        self._per_minute = per_minute
        self._used = 0
        self._dropped_in_window = 0
        self._window_end = float("-inf")

    def info(self, msg: str, *args: object, **extra: object) -> bool:
        return self.log(logging.INFO, msg, *args, **extra)

    def log(self, level: int, msg: str, *args: object, **extra: object) -> bool:
        """Write one line (``msg % args``, with ``extra`` as the record's fields) unless
        the limit is reached; True when it was written."""
        if not _log.isEnabledFor(level):
            return False
        now = self._clock()
        if now >= self._window_end:
            dropped = self._dropped_in_window
            self._window_end = now + WINDOW
            self._used = self._dropped_in_window = 0
            if dropped and self._per_minute:
                self._used = 1
                _log.warning(
                    "%d lines about peers were not logged in the last minute "
                    "(peer_log_per_minute=%d; counted in roomcast_peer_log_dropped_total)",
                    dropped, self._per_minute, extra={"dropped": dropped},
                )  # fmt: skip
        if self._used >= self._per_minute:
            self._dropped_in_window += 1
            STATS.peer_log_dropped += 1
            return False
        self._used += 1
        _log.log(level, msg, *args, extra=extra)
        return True


PEER_LOG = PeerLog()
"""The process's peer log (the limit: ``peer_log_per_minute``, set at start-up)."""

_UVICORN_PEER_LINES = {
    "Invalid HTTP request received.": "an HTTP request that does not parse: answered 400",
    "Unsupported upgrade request.": "an HTTP request to upgrade to an unsupported protocol",
    "Invalid UTF-8 sequence received from client.": (
        "a WebSocket text frame that is not UTF-8: closed with 1007"
    ),
}


def only(exc: BaseException, kind: type[BaseException]) -> bool:
    """``exc`` is a ``kind``, or a group of nothing else."""
    if isinstance(exc, BaseExceptionGroup):
        return all(only(inner, kind) for inner in exc.exceptions)
    return isinstance(exc, kind)


class PeerNoise(logging.Filter):
    """On ``uvicorn.error``: uvicorn's lines about peers' errors go through
    :data:`PEER_LOG` instead (see the module docstring)."""

    def filter(self, record: logging.LogRecord) -> bool:
        line = _UVICORN_PEER_LINES.get(record.msg) if isinstance(record.msg, str) else None
        if line is not None:
            PEER_LOG.info(line)
            return False
        exc = record.exc_info[1] if record.exc_info else None
        if exc is None:
            return True
        return not only(exc, PeerStalled)
