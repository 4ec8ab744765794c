"""Throttled: a warning of the Redis layers written at most once per interval.

The pub/sub links (redis_pubsub.py) keep one per kind of trouble; so do the
broker's slot following (redis_slots.py) and its Sentinel watch
(redis_sentinel.py). A fault that repeats fast (a reconnect loop, a refused
subscription) writes one line per interval, and the next line says how many
were left out.
"""

from __future__ import annotations

import logging
import time

__all__ = ["Throttled"]

log = logging.getLogger("roomcast.redis")


class Throttled:
    """A log line written at most once per ``interval`` seconds: the ones in
    between are counted, and the next one written says how many were left out.
    One per kind of trouble and per link, so a fault that repeats fast (a
    reconnect loop, a refused subscription) never floods the log."""

    def __init__(
        self, interval: float = 5.0, level: int = logging.WARNING, logger: logging.Logger = log
    ) -> None:
        self.interval = interval
        self.level = level
        self.logger = logger
        self.skipped = 0
        self._next = 0.0

    def __call__(self, msg: str, *args: object) -> None:
        now = time.monotonic()
        if now < self._next:
            self.skipped += 1
            return
        self._next = now + self.interval
        if self.skipped:
            msg += " (and %d more like it in the last %.0f s)"
            args = (*args, self.skipped, self.interval)
            self.skipped = 0
        self.logger.log(self.level, msg, *args)
