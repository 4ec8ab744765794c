"""Subscriber: one connection as the hub sees it, with a bounded outbox.

The hub only ever calls :meth:`Subscriber.offer`, or ``write`` on
:attr:`Subscriber.sink`, neither of which blocks or awaits.

A transport that can take complete frames without waiting (a WebSocket under
roomcast's uvicorn protocol, an SSE stream on roomcast's HTTP protocol) hands
the subscriber a :class:`DirectWrite` (:meth:`Subscriber.attach`). While that
connection is ready (open, not paused by flow control) and nothing is queued,
being sent, or closing, :attr:`Subscriber.sink` is its transport: the hub's
fan-out writes an event's shared, pre-built bytes with ``sink.write``, one call
per subscriber (hub/audience.py), and :meth:`offer` writes a reply at once.
The transport tells the subscriber when readiness may have changed
(:meth:`DirectWrite.watch`), so nothing is checked per delivery. Otherwise
(:attr:`sink` is None) frames go to the outbox, in order behind what is
already there, and count against its bounds: backpressure is the outbox's.

The writer side (a transport) must loop::

    while True:
        frame = sub.pop()
        if frame is None:
            if sub.closing:
                break
            await sub.wait()
        else:
            await send(frame)
    # then close the connection with sub.close_code, unless sub.peer_gone

and set :attr:`Subscriber.on_evict` to something that stops that loop even
while it is blocked in ``send`` on a peer that stopped reading. A transport
that runs the loop only while there is something to send sets
:attr:`Subscriber.on_wake` (called when a frame is queued, or the subscriber
closes, while no writer waits) to start it, and ends the loop where
:meth:`Subscriber.caught_up` is true instead of waiting (transports/websocket.py).

Objects here hold no references back to the hub, so they form no cycles.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable
from typing import Protocol

from ..protocol.codes import CloseCode
from .incidents import INCIDENTS
from .stats import STATS, EvictionReason

__all__ = ["SINKS", "DirectWrite", "SinkChanges", "Subscriber", "Writable"]


class Writable(Protocol):
    """What takes a connection's bytes: its asyncio transport."""

    def write(self, data: bytes, /) -> object:
        """Write ``data`` now, or buffer it in the transport."""


class DirectWrite(Protocol):
    """A connection that can take complete frames without waiting: a WebSocket
    under roomcast's uvicorn protocol, or an SSE stream written straight to its
    HTTP transport.

    The subscriber asks :meth:`ready` only when :meth:`watch`'s callback says it
    may have changed, and meanwhile writes with :attr:`transport`: the check is
    off the per-delivery path."""

    @property
    def transport(self) -> Writable:
        """The connection's transport: its ``write`` takes complete frames, written
        at once. Used only while :meth:`ready` is true. The transport itself, not
        its bound ``write``: a fan-out that calls ``transport.write(data)`` touches
        one object per connection, where a kept bound method is one more (about
        7% of the CPU per delivery of a 1000-subscriber room at one publish at a
        time: docs/performance.md), and an idle connection keeps no bound method."""

    def ready(self) -> bool:
        """Open, not closing, not paused by flow control: a write would not buffer
        past the transport's high-water mark, nor follow a close."""

    def encode(self, text: str) -> bytes:
        """``text`` (a text frame's payload, or an SSE event) as this connection's
        bytes on the wire: a WebSocket frame, or an HTTP chunk."""

    def watch(self, changed: Callable[[], object] | None) -> None:
        """Call ``changed()`` whenever :meth:`ready` may have changed (paused,
        resumed, closing, gone); None stops it."""


log = logging.getLogger("roomcast.hub")


class SinkChanges:
    """How many times any subscriber's :attr:`Subscriber.sink` has changed: a
    fan-out that recorded the sinks of a room's subscribers uses them again only
    while this has not moved (audience.py)."""

    __slots__ = ("changes",)

    def __init__(self) -> None:
        self.changes = 0


SINKS = SinkChanges()
"""Counted by every :class:`Subscriber` of the process, in any hub: a count
(never reset, nothing else) that only ever makes a fan-out look again."""

_NO_OUTBOX: deque[str] = deque(maxlen=0)
"""The outbox of every subscriber that never queued a frame (under direct writes,
most of them: an idle connection's deque would cost ~750 bytes). Always empty:
frames are only ever added to a subscriber's own deque."""


class Subscriber:
    """A connection's identity, its rooms, and its outbox of text frames."""

    __slots__ = (
        "_bytes",
        "_credit",
        "_credit_bytes",
        "_outbox",
        "_waiter",
        "before_close",
        "close_code",
        "conn_id",
        "direct",
        "max_bytes",
        "max_messages",
        "on_evict",
        "on_wake",
        "peer_gone",
        "pops",
        "rooms",
        "sending",
        "sink",
        "sse",
        "stalls",
        "user",
        "user_id",
        "watched_pops",
    )

    def __init__(
        self,
        conn_id: str,
        user: str,
        *,
        max_messages: int,
        max_bytes: int,
        sse: bool = False,
        user_id: str | None = None,
    ) -> None:
        self.conn_id = conn_id
        self.sse = sse  # receives events' ``sse`` form instead of their text frame
        self.user = user  # display name, as presence and senders show it
        self.user_id = user_id
        """The principal's stable user id, set by the transport once it knows it;
        what ``Hub.disconnect_user`` and ``Hub.unsubscribe_user`` match (control.py)."""
        self.max_messages = max_messages
        self.max_bytes = max_bytes
        self.rooms: set[str] = set()  # maintained by the hub
        self.close_code: CloseCode | None = None
        self.peer_gone = False
        self.pops = 0  # frames taken by the writer: progress, for the send watchdog
        self.sending = False  # the writer holds a frame it has not finished sending
        self.watched_pops = 0  # pops at the watchdog's last look
        self.stalls = 0  # consecutive looks that found a send with no progress
        self.before_close: Callable[[], object] | None = None
        """Set by the hub: sends what it has delivered but not yet written (the
        rooms' batches, hub/local_room.py), so a close follows everything before it."""
        self.on_evict: Callable[[], object] | None = None
        """Called once on eviction; the transport uses it to stop a blocked writer."""
        self.on_wake: Callable[[], object] | None = None
        """Called when a frame is queued, or the subscriber closes, while no writer
        waits in :meth:`wait`: a transport that runs its writer only while there is
        something to write starts it then."""
        self.direct: DirectWrite | None = None
        """What :meth:`attach` was given: the connection takes frames directly."""
        self.sink: Writable | None = None
        """While the connection takes frames directly and nothing is queued or being
        sent: its transport. The hub's fan-out calls its ``write`` per delivery
        (hub/audience.py); None: offer the frame instead. Set only through
        :meth:`_sink_to`, which counts each change in :data:`SINKS`."""
        self._outbox: deque[str] = _NO_OUTBOX  # its own deque from the first frame queued
        self._bytes = 0
        self._credit = 0  # frames queued by offer_replay, not yet sent
        self._credit_bytes = 0
        self._waiter: asyncio.Future[None] | None = None

    # -- hub side ---------------------------------------------------------------

    def attach(self, direct: DirectWrite | None) -> None:
        """Take frames directly through ``direct`` (None: through the outbox only)."""
        old, self.direct = self.direct, direct
        if old is not None:
            old.watch(None)
        if direct is not None:
            direct.watch(self.refresh)
        self.refresh()

    def refresh(self) -> None:
        """Set :attr:`sink` from the state: the transport while the
        connection is ready and nothing is queued, being sent, or closing."""
        direct = self.direct
        if (
            direct is not None
            and self.close_code is None
            and not self._outbox
            and not self.sending
            and direct.ready()
        ):
            self._sink_to(direct.transport)
        else:
            self._sink_to(None)

    def _sink_to(self, sink: Writable | None) -> None:
        """Set :attr:`sink`; every change is counted in :data:`SINKS`."""
        if sink is not self.sink:
            self.sink = sink
            SINKS.changes += 1

    def offer(self, frame: str) -> bool:
        """Send ``frame`` (written at once when nothing is ahead of it and the
        connection takes frames directly), else queue it. False if closing or
        just evicted."""
        sink = self.sink
        if sink is not None:
            assert self.direct is not None  # sink is only set with direct
            try:
                sink.write(self.direct.encode(frame))
            except Exception:  # a bug (a gone peer is told, not raised): this one only
                log.exception("writing to %r failed; closing it with 1011", self)
                self.close(CloseCode.INTERNAL_ERROR, discard=True)
                return False
            return True
        if self.close_code is not None:
            return False
        if self._outbox is _NO_OUTBOX:
            self._outbox = deque()
        self._outbox.append(frame)
        self._bytes += len(frame)
        if (
            len(self._outbox) > self.max_messages + self._credit
            or self._bytes > self.max_bytes + self._credit_bytes
        ):
            self.evict()
            return False
        self._wake()
        return True

    def evict(self, reason: EvictionReason = "outbox_full") -> None:
        """Close as a slow consumer (3001, unless already closing with another
        code): drop the outbox and stop the writer, once. ``reason`` is counted
        for /metrics (hub/stats.py)."""
        was_open = self.close_code is None
        self.close(CloseCode.SLOW_CONSUMER, discard=True)
        hook, self.on_evict = self.on_evict, None
        if hook is not None or was_open:
            STATS.evicted(reason)
            user = self.user_id or self.user
            INCIDENTS.evicted(reason, self.conn_id, user, self.user, sse=self.sse, rooms=self.rooms)
        if hook is not None:
            hook()

    def offer_replay(self, frames: list[str]) -> None:
        """Queue a subscribe's replay without counting it against the bounds.

        A resume may replay up to a whole room history at once; the bounds are
        raised by the replay's size until that many frames have been sent, so
        only live traffic a client cannot keep up with evicts it.
        """
        if self.close_code is not None or not frames:
            return
        self._sink_to(None)
        size = sum(map(len, frames))
        if self._outbox is _NO_OUTBOX:
            self._outbox = deque()
        self._outbox.extend(frames)
        self._bytes += size
        self._credit += len(frames)
        self._credit_bytes += size
        self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            if not waiter.done():
                waiter.set_result(None)
        elif self.on_wake is not None:
            self.on_wake()

    def close(self, code: CloseCode, *, discard: bool = False, peer_gone: bool = False) -> None:
        """Mark closing with ``code``; the writer sends what is queued, then closes.

        ``discard`` drops the queued frames first (eviction); ``peer_gone`` says
        the peer has already disconnected, so nothing more is sent at all.
        The first close code wins.
        """
        if self.close_code is None and not (discard or peer_gone) and self.before_close:
            self.before_close()
        self._sink_to(None)
        if self.close_code is None:
            self.close_code = code
        if peer_gone:
            self.peer_gone = True
        if discard or peer_gone:
            self._outbox.clear()
            self._bytes = self._credit = self._credit_bytes = 0
        self._wake()

    # -- writer side ------------------------------------------------------------

    @property
    def closing(self) -> bool:
        return self.close_code is not None

    @property
    def queued(self) -> int:
        return len(self._outbox)

    def pop(self) -> str | None:
        """The next frame to send, or None when the outbox is empty."""
        if not self._outbox:
            return None
        frame = self._outbox.popleft()
        if not self._outbox:
            self._outbox = _NO_OUTBOX  # an idle connection keeps no deque
        self._bytes -= len(frame)
        self.pops += 1
        self.sending = True
        self._sink_to(None)
        if self._credit:
            self._credit -= 1
            self._credit_bytes = max(0, self._credit_bytes - len(frame))
        return frame

    def caught_up(self) -> bool:
        """The writer has sent what it took: True when nothing is queued and the
        subscriber is not closing (frames may go out directly again), so a writer
        may stop here until :attr:`on_wake` calls for one."""
        self.sending = False
        if self._outbox or self.close_code is not None:
            return False
        if self.direct is not None:
            self.refresh()
        return True

    async def wait(self) -> None:
        """Wait until a frame is offered or the subscriber is closed."""
        if not self.caught_up():
            return
        waiter = self._waiter
        if waiter is None or waiter.done():
            waiter = self._waiter = asyncio.get_running_loop().create_future()
        await waiter

    def __repr__(self) -> str:
        return f"Subscriber({self.conn_id!r}, {self.user!r}, queued={len(self._outbox)})"
