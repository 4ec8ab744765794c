"""Throttled: a log line of the Redis layers written at most once per interval.

The pub/sub links (redis_pubsub.py) keep one per kind of trouble; so do the
broker's slot following (redis_slots.py), its Sentinel watch
(redis_sentinel.py) and the publish batcher (redis_queues.py: one per kind of
unexpected error, every :data:`~roomcast.hub.redis_queues.LOG_EVERY` seconds,
with its own wording of the note, :data:`SINCE_THE_LAST_REPORT`). A fault that
repeats fast (a reconnect loop, a refused subscription) writes one line per
interval, and the next line says how many were left out.
"""

from __future__ import annotations

import logging
import time

__all__ = ["IN_THE_LAST", "SINCE_THE_LAST_REPORT", "Throttled"]

log = logging.getLogger("roomcast.redis")

IN_THE_LAST = " (and {skipped} more like it in the last {interval:.0f} s)"
"""The note added to a line after some like it were left out (``str.format``
fields ``skipped`` and ``interval``)."""
SINCE_THE_LAST_REPORT = " ({skipped} more like it since the last report)"
"""The publish batcher's wording of that note."""


class Throttled:
    """A log line written at most once per ``interval`` seconds: the ones in
    between are counted, and the next one written says how many were left out.
    One per kind of trouble and per link, so a fault that repeats fast (a
    reconnect loop, a refused subscription) never floods the log. ``note``
    says it (:data:`IN_THE_LAST`, or :data:`SINCE_THE_LAST_REPORT`)."""

    def __init__(
        self,
        interval: float = 5.0,
        level: int = logging.WARNING,
        logger: logging.Logger = log,
        *,
        note: str = IN_THE_LAST,
    ) -> None:
        self.interval = interval
        self.level = level
        self.logger = logger
        self.note = note
        self.skipped = 0
        self._next = 0.0

    def __call__(self, msg: str, *args: object, exc_info: BaseException | None = None) -> None:
        """Log ``msg % args`` (with ``exc_info``'s traceback, if given) unless a
        line was written less than ``interval`` seconds ago: then count it."""
        now = time.monotonic()
        if now < self._next:
            self.skipped += 1
            return
        self._next = now + self.interval
        if self.skipped:
            note = self.note.format(skipped=self.skipped, interval=self.interval)
            msg += note.replace("%", "%%") if args else note
            self.skipped = 0
        self.logger.log(self.level, msg, *args, exc_info=exc_info)
