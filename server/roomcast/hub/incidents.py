"""What went wrong lately in this process: the last evictions and the last
warnings and errors roomcast logged, for the admin page (api/admin.py).

Two bounded rings, each keeping the newest :data:`KEPT` entries; older ones
fall off. Nothing is recorded on the fan-out path but an eviction, which is
rare and already leaves it. Errors come from the ``roomcast`` loggers through
:class:`IncidentLog`, a logging handler a running admin page attaches
(:func:`capture_logs`), so every WARNING and ERROR line roomcast writes
anywhere is also kept here, without each place having to know.

Like the counters of stats.py the rings are per process (several hubs in one
process share them); each worker keeps and answers for its own.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

__all__ = ["INCIDENTS", "KEPT", "Eviction", "Incidents", "LoggedError", "capture_logs"]

KEPT = 100
"""Entries each ring keeps."""
MAX_TEXT = 500
"""Characters of a logged message kept (the log has all of it)."""
MAX_ROOMS = 10
"""Rooms of an evicted connection named (the count is kept too)."""


@dataclass(frozen=True, slots=True)
class Eviction:
    """A connection closed as a slow consumer (backpressure.md)."""

    ts: float
    reason: str  # stats.EvictionReason
    conn: str
    user: str  # the principal's user id
    name: str  # its display name
    transport: str  # "websocket" or "sse"
    rooms: tuple[str, ...]  # at most MAX_ROOMS of them
    room_count: int


@dataclass(frozen=True, slots=True)
class LoggedError:
    """A WARNING or ERROR line of a ``roomcast`` logger."""

    ts: float
    level: str
    logger: str
    message: str  # at most MAX_TEXT characters, secrets redacted


class Incidents:
    """The two rings. Appending is O(1); reading copies at most ``kept`` entries."""

    def __init__(self, kept: int = KEPT) -> None:
        self.evictions: deque[Eviction] = deque(maxlen=kept)
        self.errors: deque[LoggedError] = deque(maxlen=kept)

    def evicted(
        self, reason: str, conn: str, user: str, name: str, *, sse: bool, rooms: Iterable[str]
    ) -> None:
        names = sorted(rooms)
        self.evictions.append(
            Eviction(
                time.time(),
                reason,
                conn,
                user,
                name,
                "sse" if sse else "websocket",
                tuple(names[:MAX_ROOMS]),
                len(names),
            )
        )

    def logged(self, level: str, logger: str, message: str) -> None:
        text = message if len(message) <= MAX_TEXT else message[: MAX_TEXT - 1] + "…"
        self.errors.append(LoggedError(time.time(), level, logger, text))

    def recent_evictions(self, limit: int = KEPT) -> list[Eviction]:
        """Newest first."""
        return list(reversed(self.evictions))[:limit]

    def recent_errors(self, limit: int = KEPT) -> list[LoggedError]:
        """Newest first."""
        return list(reversed(self.errors))[:limit]


INCIDENTS = Incidents()
"""This process's rings."""


class IncidentLog(logging.Handler):
    """Keeps WARNING and ERROR records in :data:`INCIDENTS`; ``redact`` cleans
    each message first (logs.py's, so no credential is kept)."""

    def __init__(self, redact: Callable[[str], str], incidents: Incidents = INCIDENTS) -> None:
        super().__init__(logging.WARNING)
        self.redact = redact
        self.incidents = incidents

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = record.getMessage()
            if record.exc_info and record.exc_info[1] is not None:
                exc = record.exc_info[1]
                text += f" ({type(exc).__name__}: {exc})"
            self.incidents.logged(record.levelname, record.name, self.redact(text))
        except Exception:  # a logging handler never raises into the code that logged
            self.handleError(record)


_attached: list[IncidentLog] = []


@contextlib.contextmanager
def capture_logs(redact: Callable[[str], str]) -> Iterator[None]:
    """While inside, WARNING and ERROR lines of the ``roomcast`` loggers are kept
    in :data:`INCIDENTS`. One handler per process however many runtimes enter;
    the last one out takes it off the logger again."""
    logger = logging.getLogger("roomcast")
    if not _attached:
        handler = IncidentLog(redact)
        logger.addHandler(handler)
    else:
        handler = _attached[0]
    _attached.append(handler)
    try:
        yield
    finally:
        _attached.pop()
        if not _attached:
            logger.removeHandler(handler)
