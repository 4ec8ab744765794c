"""Keep-alive comments for event streams: one timer for all of a hub's streams.

Proxies and browsers drop a connection that carries nothing for a while, so an
SSE stream sends a comment every ``sse_keepalive`` seconds. sse-starlette gives
every stream a task that sleeps and sends one (about 2 KB per idle stream, with
its frames and timer); the streams roomcast serves itself (transports/sse.py,
under roomcast's HTTP protocol) share one :class:`Pinger` per hub instead: one
``call_later`` that, every ``interval`` seconds, offers a ``: ping`` comment to
each stream whose outbox is empty. An offer goes the way the stream's events go
(written directly, or queued behind what is queued and sent by the stream's
generator), so a comment never splits or overtakes an event. A stream with
frames queued gets none: it is either busy or stalled (the send watchdog's
business). The cost per stream is one dict entry.
"""

from __future__ import annotations

import asyncio
import weakref

from ..hub.hub import Hub
from ..hub.subscriber import Subscriber

__all__ = ["PING", "Pinger", "pinger"]

PING = ": ping\n\n"
"""A comment: EventSource and every SSE parser skip it."""


class Pinger:
    """The streams of one hub (on its event loop) that get a comment every
    ``interval`` seconds. :meth:`add` a stream's subscriber once its response has
    started, :meth:`remove` it when the stream ends."""

    __slots__ = ("_handle", "interval", "subs")

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self.subs: dict[Subscriber, None] = {}
        self._handle: asyncio.TimerHandle | None = None

    def add(self, sub: Subscriber) -> None:
        self.subs[sub] = None
        if self._handle is None:
            self._handle = asyncio.get_running_loop().call_later(self.interval, self._tick)

    def remove(self, sub: Subscriber) -> None:
        self.subs.pop(sub, None)
        if not self.subs and self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def _tick(self) -> None:
        for sub in list(self.subs):  # (an offer may evict: never while iterating)
            if not sub.queued and not sub.closing:
                sub.offer(PING)
        self._handle = asyncio.get_running_loop().call_later(self.interval, self._tick)


_PINGERS: weakref.WeakKeyDictionary[Hub, Pinger] = weakref.WeakKeyDictionary()


def pinger(hub: Hub, interval: float) -> Pinger:
    """The :class:`Pinger` of ``hub``'s streams (made at its first stream)."""
    found = _PINGERS.get(hub)
    if found is None or found.interval != interval:
        found = _PINGERS[hub] = Pinger(interval)
    return found
