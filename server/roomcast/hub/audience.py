"""Audience: one form of a room's live subscribers (text frames, or SSE) as its
fan-out writes to them.

The fan-out (:meth:`Audience.send`) writes an item's shared bytes to every
subscriber whose :attr:`Subscriber.sink` is set, and offers the item's texts to
the others. Walking the subscribers reads each one's ``sink``: at 1,000
subscribers and one event at a time that is 1,000 objects touched per event
besides the transports themselves, with the cache cold behind the previous
fan-out's writes. So an audience keeps, beside its subscribers, the list of the
transports it wrote to last time (:attr:`Audience.writes`) and the subscribers it
offered to (:attr:`Audience.others`), and uses those lists again while both still
hold: no subscriber joined or left (:meth:`Audience.add`, :meth:`Audience.discard`),
and no subscriber anywhere had its ``sink`` changed since (:data:`SINKS`, a counter
every :class:`Subscriber` bumps when its ``sink`` changes). The loop then touches
only what the frame-once ``transport.write`` loop touches. A fan-out after any
change walks the subscribers as before and records the lists again.

Within one fan-out the lists hold to the end: a transport's ``write`` changes no
subscriber's ``sink`` but its own (flow control pausing it, after its data was
taken), and the loop has passed that subscriber by then.

:data:`SINKS` counts changes in every hub of the process (a subscriber need not
be registered with a hub to be in a room), so a busy process with slow
subscribers, whose ``sink`` comes and goes with each frame their writer sends,
walks the subscribers more often; a list is never used after a change.

A subscriber that raises is handled as fanout.py says.
"""

from __future__ import annotations

from collections.abc import Iterator
from itertools import chain
from operator import length_hint

from ..protocol.events import Event, Notice
from .fanout import offer_rest
from .subscriber import SINKS, Subscriber, Writable

__all__ = ["Audience"]


class Audience:
    """Subscribers that get the same bytes for an item (:attr:`subs`), and what
    the last fan-out found of them (see the module docstring)."""

    __slots__ = ("others", "seen", "subs", "writes", "writes_to")

    def __init__(self) -> None:
        self.subs: dict[Subscriber, None] = {}
        self.seen = -1  # SINKS.changes when the lists were recorded; -1: not recorded
        self.writes: list[Writable] = []  # the sinks written to, in order
        self.writes_to: list[Subscriber] = []  # whose they are, in the same order
        self.others: list[Subscriber] = []  # offered each text instead

    def __len__(self) -> int:
        return len(self.subs)

    def __bool__(self) -> bool:
        return bool(self.subs)

    def __iter__(self) -> Iterator[Subscriber]:
        return iter(self.subs)

    def __contains__(self, sub: object) -> bool:
        return sub in self.subs

    def add(self, sub: Subscriber) -> None:
        self.subs[sub] = None
        self._forget()

    def discard(self, sub: Subscriber) -> bool:
        """Take ``sub`` out; whether it was in."""
        if sub not in self.subs:
            return False
        del self.subs[sub]
        self._forget()
        return True

    def _forget(self) -> None:
        """The subscribers changed: the next fan-out walks them. The lists are
        replaced, not cleared (a loop over them may be under way), and a room
        that publishes no more keeps no departed connection's transport."""
        self.seen = -1
        self.writes, self.writes_to, self.others = [], [], []

    def send(self, data: bytes, texts: list[str], items: list[Event | Notice]) -> None:
        """Write ``data`` (the items' shared bytes) to each subscriber that takes it
        directly; offer the others each text in order."""
        if self.seen == SINKS.changes:
            self._send_again(data, texts, items)
        else:
            self._send_walking(data, texts, items)

    def _send_again(self, data: bytes, texts: list[str], items: list[Event | Notice]) -> None:
        """The lists of the last fan-out still hold: the hot path of fan-out,
        one call per transport."""
        writes, writes_to, others = self.writes, self.writes_to, self.others
        rest = iter(writes)
        try:
            for sink in rest:
                sink.write(data)
        except Exception:
            failed = len(writes) - length_hint(rest) - 1
            self.seen = -1
            offer_rest(
                writes_to[failed],
                chain(writes_to[failed + 1 :], others),
                lambda s: _send_one(s, data, texts),
                _what(items),
            )
            return
        if others:
            self._offer(others, data, texts, items)

    def _send_walking(self, data: bytes, texts: list[str], items: list[Event | Notice]) -> None:
        """Read each subscriber's ``sink``, and record the lists for next time
        (recorded before the writes: a write that changes a sink makes them stale
        again, and so does one that raises)."""
        seen = SINKS.changes
        writes: list[Writable] = []
        writes_to: list[Subscriber] = []
        others: list[Subscriber] = []
        for sub in self.subs:
            sink = sub.sink
            if sink is not None:
                writes.append(sink)
                writes_to.append(sub)
            else:
                others.append(sub)
        self.writes, self.writes_to, self.others, self.seen = writes, writes_to, others, seen
        self._send_again(data, texts, items)

    def _offer(
        self, others: list[Subscriber], data: bytes, texts: list[str], items: list[Event | Notice]
    ) -> None:
        rest, sub = iter(others), None
        try:
            for sub in rest:
                for text in texts:
                    sub.offer(text)
        except Exception:
            self.seen = -1
            offer_rest(sub, rest, lambda s: _send_one(s, data, texts), _what(items))


def _what(items: list[Event | Notice]) -> Event | Notice | str:
    return items[0] if len(items) == 1 else "a batch of events"


def _send_one(sub: Subscriber, data: bytes, texts: list[str]) -> None:
    """What a fan-out does for one subscriber, reading its ``sink`` now."""
    sink = sub.sink
    if sink is not None:
        sink.write(data)
    else:
        for text in texts:
            sub.offer(text)
