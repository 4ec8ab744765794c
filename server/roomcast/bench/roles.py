"""What a connection does in a run: subscribe and count, or publish and collect acks.

A :class:`Subscriber` is a channel joined to one room with a :class:`~.accounting.Stream`;
:func:`receive` reads it until it closes, accounting every message event's offset and,
within the measured window, the publish-to-receive latency. A :class:`Publisher` sends
on a channel at a fixed rate or as fast as a window of unacknowledged publishes allows;
its acknowledgements are roomcast's publish replies, or, on relaying servers, its own
frame coming back (``ack="echo"``). In the ``rooms`` scenario one channel is both.

A publisher obeys the server's publish rate limit as a well-behaved client does: at its
first ``rate_limited`` reply it waits the ``retry in`` the reply names, then publishes at
:data:`PACE_UNDER_LIMIT` of the limit the reply states (``at most N publishes per
second``), rather than be closed 3004 after ``max_rate_breaches`` refusals. The report
says so (``server_publish_limit``, ``publisher_paced_to``).

All of one worker's connections share one :class:`Tally` (counters, latency histogram,
measured window): a worker process is single-threaded, so no locking.
"""

from __future__ import annotations

import asyncio
import collections
import random
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from .accounting import Stream
from .channel import Channel, ChannelClosed, ChannelError
from .frames import (
    PRESENCE_TYPES,
    RESET_TYPE,
    SYNC_TYPE,
    Reply,
    data_pad,
    message_frame,
    parse_message,
    parse_reply,
    publish_frame,
    sync_frame,
)
from .histogram import Histogram

__all__ = ["Publisher", "Subscriber", "Tally", "frame_handler", "receive", "sleep_until"]

SYNC_INTERVAL = 0.1
"""Seconds between barrier frames while subscribers of a relaying server join."""
PACE_UNDER_LIMIT = 0.9
"""After a ``rate_limited`` reply, the publisher's rate as a fraction of the server's
limit: under it, so the server's token bucket never runs dry again."""
UNSTATED_LIMIT_PACE = 10.0
"""Publishes/s after a ``rate_limited`` reply that states no limit (when not paced yet;
a paced publisher halves its rate instead)."""
_LIMIT = re.compile(r"at most ([0-9]+(?:\.[0-9]+)?) publishes per second")
_RETRY = re.compile(r"retry in ([0-9]+(?:\.[0-9]+)?) s")


def _number(pattern: re.Pattern[str], text: str) -> float | None:
    match = pattern.search(text)
    return float(match.group(1)) if match else None


@dataclass
class Tally:
    """One worker's counters. The window ``[t_measure, t_stop)`` (wall clock) is open
    only once the coordinator says go; before that nothing is measured."""

    deliveries: int = 0
    """Every message event received by a subscriber."""
    measured: int = 0
    """Deliveries received within the measured window."""
    other: int = 0
    presence: int = 0
    joined: int = 0
    t_measure: float = float("inf")
    t_stop: float = float("inf")
    closing: bool = False
    """Set when the client closes its connections: closes are no longer the server's."""
    latency: Histogram = field(default_factory=Histogram)
    errors: collections.Counter[str] = field(default_factory=collections.Counter)
    closed: collections.Counter[str] = field(default_factory=collections.Counter)
    samples: dict[str, str] = field(default_factory=dict)
    """The first message of each kind of error."""

    def error(self, kind: str, message: str = "") -> None:
        self.errors[kind] += 1
        if message and kind not in self.samples:
            self.samples[kind] = message[:300]


class Subscriber:
    """A channel subscribed to one room (``stream``), perhaps also publishing."""

    __slots__ = ("channel", "joined", "publisher", "stream")

    def __init__(
        self,
        channel: Channel,
        stream: Stream | None,
        joined: bool = True,
        publisher: Publisher | None = None,
    ) -> None:
        self.channel = channel
        self.stream = stream
        self.joined = joined
        self.publisher = publisher


async def sleep_until(wall: float) -> None:
    delay = wall - time.time()
    if delay > 0:
        await asyncio.sleep(delay)


def _other(sub: Subscriber, frame: bytes, tally: Tally) -> None:
    """A frame that is not a message event."""
    if SYNC_TYPE in frame:
        if not sub.joined:
            sub.joined = True
            tally.joined += 1
        return
    reply = parse_reply(frame)
    if reply is not None and sub.publisher is not None:
        sub.publisher.on_reply(reply)
    elif reply is not None and not reply.ok:
        tally.error(f"reply:{reply.error}", frame.decode(errors="replace"))
    elif any(kind in frame for kind in PRESENCE_TYPES):
        tally.presence += 1
    elif RESET_TYPE in frame:
        tally.error("reset", frame.decode(errors="replace"))
    else:
        tally.other += 1


def frame_handler(sub: Subscriber, tally: Tally) -> Callable[[bytes], None]:
    """The accounting of one frame received by ``sub``: offsets, latency, replies."""
    stream = sub.stream
    publisher = sub.publisher
    echo = publisher is not None and publisher.ack == "echo"
    latency = tally.latency
    arrival_clock = getattr(sub.channel, "arrival_clock", None)
    clock = (arrival_clock() if arrival_clock is not None else None) or time.time

    def handle(frame: bytes) -> None:
        message = parse_message(frame)
        if message is None:
            _other(sub, frame, tally)
            return
        offset, sent = message
        if echo:
            assert publisher is not None
            publisher.on_echo(offset)
        if stream is None:
            return
        tally.deliveries += 1
        if offset == stream.expect:
            stream.expect = offset + 1
        else:
            stream.deliver(offset)
        now = clock()
        if tally.t_measure <= now < tally.t_stop:
            tally.measured += 1
        if sent and tally.t_measure <= sent < tally.t_stop:
            latency.record(int((now - sent) * 1_000_000))

    return handle


async def receive(sub: Subscriber, tally: Tally) -> None:
    """Read ``sub``'s channel until it closes (or the task is cancelled).

    A channel that can call back per frame (``deliver_to``: the bench's own
    WebSocket client) gets the handler and this task only waits for the close:
    no task wake-up per frame. Others are read frame by frame."""
    handle = frame_handler(sub, tally)
    channel = sub.channel
    try:
        deliver_to = getattr(channel, "deliver_to", None)
        if deliver_to is not None:
            await deliver_to(handle)
        else:
            recv = channel.recv
            while True:
                handle(await recv())
    except ChannelClosed as exc:
        if not tally.closing:
            tally.closed[exc.code] += 1
            if exc.reason and f"closed:{exc.code}" not in tally.samples:
                tally.samples[f"closed:{exc.code}"] = exc.reason[:300]
            if sub.stream is not None:
                sub.stream.closed = True
            publisher = sub.publisher
            if publisher is not None:
                publisher.lost_channel()
                if sub.stream is None:
                    tally.error(f"publisher:closed:{exc.code}", f"the publisher's {exc}")
    except Exception as exc:  # a bug or a garbled frame: count it, stop this reader
        tally.error(f"receive:{type(exc).__name__}", repr(exc))


class Publisher:
    """Publishes to one room on one channel; see the module docstring.

    ``ack`` is ``"reply"`` (roomcast: the publish reply carries the room offset) or
    ``"echo"`` (a relaying server: the publisher's own frame coming back; the offset is
    the one the publisher put in it). ``max_acked`` is the highest acknowledged offset:
    the subscribers of the room are expected to receive everything up to it.
    """

    def __init__(
        self,
        channel: Channel,
        room: str,
        *,
        ack: str,
        rate: float,
        window: int,
        payload_bytes: int,
        tally: Tally,
    ) -> None:
        self.channel = channel
        self.room = room
        self.ack = ack
        self.rate = rate
        self.window = window
        self.pad = data_pad(payload_bytes)
        self.tally = tally
        self.slots = asyncio.Semaphore(window)
        self.sent = 0
        self.acked = 0
        self.refused = 0
        self.max_acked: int | None = None
        self.sent_measured = 0
        self.done_sending = False
        self.settled = asyncio.Event()
        self.syncing = False
        self.next_due = 0.0
        """Wall-clock time of the next publish when paced (``rate`` > 0)."""
        self.resume_at = 0.0
        """No publish before this (wall clock): the server asked to retry later."""
        self.server_limit: float | None = None
        """The publish rate limit the server stated in a ``rate_limited`` reply."""
        self.paced_to: float | None = None
        """The rate this publisher slowed to after ``rate_limited`` replies."""

    def _release(self) -> None:
        self.slots.release()
        if self.done_sending and self.acked + self.refused >= self.sent:
            self.settled.set()

    def on_reply(self, reply: Reply) -> None:
        if self.ack == "reply" and reply.ok:
            offset = reply.result.get("offset")
            if isinstance(offset, int) and (self.max_acked is None or offset > self.max_acked):
                self.max_acked = offset
            self.acked += 1
        elif not reply.ok:
            self.refused += 1
            self.tally.error(f"publish:{reply.error}", f"publish refused: {reply.error}")
            if reply.error == "rate_limited":
                self._slow_down(reply.message)
        else:
            return
        self._release()

    def _slow_down(self, message: str) -> None:
        """Obey a ``rate_limited`` reply: wait as it says, then publish under the limit."""
        limit = _number(_LIMIT, message)
        if limit is not None and limit > 0:
            self.server_limit = limit
            pace = limit * PACE_UNDER_LIMIT
        else:
            pace = self.rate / 2 if self.rate > 0 else UNSTATED_LIMIT_PACE
        if self.rate == 0 or pace < self.rate:
            self.rate = self.paced_to = pace
        retry = _number(_RETRY, message)
        now = time.time()
        self.resume_at = max(self.resume_at, now + (1 / self.rate if retry is None else retry))
        self.next_due = max(self.next_due, self.resume_at)

    def on_echo(self, offset: int) -> None:
        if offset > self.sent:  # not ours (another publisher on a relaying server)
            return
        if self.max_acked is None or offset > self.max_acked:
            self.max_acked = offset
        self.acked += 1
        self._release()

    def lost_channel(self) -> None:
        """The channel closed: nothing more will be acknowledged."""
        self.done_sending = True
        self.settled.set()
        for _ in range(self.window):
            self.slots.release()

    def _frame(self, n: int, now: float) -> str:
        if self.ack == "reply":
            return publish_frame(n, self.room, now, self.pad)
        return message_frame(n, self.room, now, self.pad)

    async def run(self, t_go: float, t_stop: float, t_measure: float) -> None:
        """Publish from ``t_go`` until ``t_stop`` (wall clock)."""
        phase = random.random() / self.rate if self.rate > 0 else 0.0  # spread publishers
        await sleep_until(t_go + phase)
        self.next_due = time.time()
        slots = self.slots
        n = 0
        try:
            while True:
                now = time.time()
                if now >= t_stop:
                    break
                due = max(self.next_due, self.resume_at) if self.rate > 0 else self.resume_at
                if due > now:
                    await asyncio.sleep(min(due, t_stop) - now)
                    continue
                if slots.locked():
                    try:
                        await asyncio.wait_for(slots.acquire(), t_stop - now)
                    except TimeoutError:
                        break
                else:
                    await slots.acquire()
                if self.done_sending:  # the channel was lost
                    break
                if time.time() < self.resume_at:  # refused while it waited for the slot
                    slots.release()
                    continue
                n += 1
                now = time.time()
                self.sent = n  # before the send: its ack may be read while it drains
                await self.channel.send(self._frame(n, now))
                if self.rate > 0:
                    self.next_due += 1 / self.rate
                if t_measure <= now < t_stop:
                    self.sent_measured += 1
        except ChannelError as exc:
            self.tally.error("publish:closed", str(exc))
        finally:
            self.done_sending = True
            if self.acked + self.refused >= self.sent:
                self.settled.set()

    async def drain(self, deadline: float) -> None:
        """Wait (until ``deadline``, wall clock) for the acks of what was sent."""
        timeout = deadline - time.time()
        if timeout > 0 and not self.settled.is_set():
            try:
                await asyncio.wait_for(self.settled.wait(), timeout)
            except TimeoutError:
                unacked = self.sent - self.acked - self.refused
                self.tally.error("publish:unacknowledged", f"{unacked} publishes never acked")

    async def sync(self) -> None:
        """Send barrier frames until :attr:`syncing` is cleared (relaying servers)."""
        self.syncing = True
        seq = 0
        try:
            while self.syncing:
                seq += 1
                await self.channel.send(sync_frame(self.room, seq))
                await asyncio.sleep(SYNC_INTERVAL)
        except ChannelError as exc:
            self.tally.error("sync:closed", str(exc))
