"""The rooms a client keeps subscribed, across its connections.

:class:`Rooms` holds each room's :class:`Subscription` while it is wanted and makes
its ``subscribe`` requests: on every new connection one per room, from the room's
last position, ahead of any other request (the server answers in order, so requests
made meanwhile act on resubscribed rooms). A reply is applied as it is read, before
the replayed events that follow it; events of a room count only once its subscribe
on the current connection has been answered. A refused (re)subscribe ends the room's
subscription with the refusal; one with no reply in time drops the connection, and
the next one subscribes again.
"""

from __future__ import annotations

import asyncio
from typing import Any

from ..protocol.events import Position
from ..protocol.frames import Subscribe
from .errors import RequestRefused, RequestTimeout
from .events import SubscribeResult
from .link import Link
from .options import ClientOptions
from .requests import PendingRequests, Request, request_fields
from .subscription import Subscription

__all__ = ["Resubscribe", "Rooms"]

Resubscribe = tuple[Subscription, Position | None, Request]
"""A room, the position it asks from, and its subscribe request."""


class Rooms:
    """Every wanted room's subscription; used by one client."""

    def __init__(self, requests: PendingRequests, options: ClientOptions) -> None:
        self._subs: dict[str, Subscription] = {}
        self._requests = requests
        self._options = options
        self._link: Link | None = None  # the connection whose subscribes count

    def __contains__(self, room: str) -> bool:
        return room in self._subs

    def get(self, room: str) -> Subscription | None:
        return self._subs.get(room)

    def snapshot(self) -> dict[str, Subscription]:
        return dict(self._subs)

    def add(self, sub: Subscription) -> None:
        self._subs[sub.room] = sub

    def forget(self, sub: Subscription) -> None:
        if self._subs.get(sub.room) is sub:
            del self._subs[sub.room]

    def connected(self, link: Link) -> list[Resubscribe]:
        """``link`` is up: a subscribe for every wanted room not yet asked on it."""
        self._link = link
        return [self.subscribe(sub) for sub in self._subs.values() if not sub.subscribed]

    def disconnected(self) -> None:
        """The connection ended: no room is subscribed on the server any more."""
        self._link = None
        for sub in self._subs.values():
            sub.subscribed = sub.live = False

    def subscribe(self, sub: Subscription) -> Resubscribe:
        """The subscribe request of ``sub`` on the current connection, from its position."""
        since = sub.since()
        fields = request_fields(
            Subscribe, "subscribe", room=sub.room, since=since._asdict() if since else None
        )
        request = self._requests.new(
            "subscribe", fields, self._options.request_timeout, internal=True
        )
        sub.subscribed = True
        link = self._link

        def answered(result: dict[str, Any]) -> None:
            # Synchronously, as the reply is read: the replayed events come next.
            if sub.wanted and self._link is link:
                sub.live = True
                sub.subscribed_with(SubscribeResult.of(result), since)

        def settled(future: asyncio.Future[dict[str, Any]]) -> None:
            error = None if future.cancelled() else future.exception()
            if isinstance(error, RequestRefused):
                if sub.wanted:
                    self.forget(sub)
                    sub.end(error)
            elif isinstance(error, RequestTimeout) and link is not None and sub.wanted:
                link.drop(f"no reply to subscribe {sub.room} in time")

        request.on_result = answered
        request.future.add_done_callback(settled)
        return sub, since, request

    def deliver(self, frame: dict[str, Any]) -> None:
        """An event frame: to its room, if subscribed and answered on this connection."""
        sub = self._subs.get(frame.get("room", ""))
        if sub is not None and sub.live:
            sub.deliver(frame)
            if not sub.active:  # the server's ``unsubscribed``
                self.forget(sub)

    def abandon(self, sub: Subscription) -> None:
        """End a subscription whose first subscribe its caller gave up on; if it was
        sent, unsubscribe (it may yet be answered)."""
        on_server = sub.subscribed and self._link is not None
        self.forget(sub)
        sub.end()
        if on_server:
            request = self._requests.new(
                "unsubscribe", {"room": sub.room}, self._options.request_timeout, internal=True
            )
            request.future.add_done_callback(_retrieve)
            self._requests.submit(request)

    def revoked(self, rooms: list[str]) -> None:
        """A ``refresh`` took these rooms away: they end with ``Unsubscribed``."""
        for room in rooms:
            sub = self._subs.get(room)
            if sub is not None:
                self.forget(sub)
                sub.removed("revoked")

    def end_all(self, error: Exception | None) -> None:
        """The client is done: every subscription ends (raising ``error``, if any)."""
        subs, self._subs = list(self._subs.values()), {}
        for sub in subs:
            sub.end(error)


def _retrieve(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()
