"""Per-subscriber delivery accounting: lost, duplicated and out-of-order messages.

Every message of a room carries an offset, one more than the previous message's. A
subscriber joined at offset ``base`` must then receive ``base + 1``, ``base + 2``, ... in
order, each once. A :class:`Stream` follows one subscriber and classifies every offset it
receives:

- the next one expected: in order (the fast path, a single comparison);
- one beyond it: the offsets jumped over become a *gap*, which a later arrival may fill;
- one inside a gap: it came *out of order* (after a later one); the gap shrinks;
- anything else (already received, or at or below ``base``): a *duplicate*.

Whether a gap is a *loss* can only be known at the end: the coordinator learns from the
publishers the highest offset the server acknowledged in each room (the *target*), and
:meth:`Stream.missing` counts the offsets up to the target that never arrived. Offsets
beyond the target (published but not yet acknowledged when the publishers stopped) are
neither expected nor lost.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Integrity", "Stream", "integrity"]


class Stream:
    """Delivery state of one subscriber in one room.

    The receive loop calls ``deliver(offset)`` for every message event (or inlines the
    fast path: ``if offset == s.expect: s.expect += 1 else: s.deliver(offset)``).
    """

    __slots__ = ("base", "closed", "duplicated", "expect", "gaps", "out_of_order", "room")

    def __init__(self, room: str, base: int) -> None:
        self.room = room
        self.base = base
        self.expect = base + 1
        self.gaps: list[list[int]] = []  # [first, last] offsets not received, ascending
        self.duplicated = 0
        self.out_of_order = 0
        self.closed = False  # the server closed this subscriber's connection

    def deliver(self, offset: int) -> None:
        """Account for one received message at ``offset``."""
        if offset == self.expect:
            self.expect = offset + 1
        elif offset > self.expect:
            self.gaps.append([self.expect, offset - 1])
            self.expect = offset + 1
        elif not self._fill(offset):
            self.duplicated += 1

    def _fill(self, offset: int) -> bool:
        """Take ``offset`` out of a gap; False if it was in none."""
        for i, gap in enumerate(self.gaps):
            first, last = gap
            if offset < first:
                return False
            if offset > last:
                continue
            self.out_of_order += 1
            if first == last:
                del self.gaps[i]
            elif offset == first:
                gap[0] = offset + 1
            elif offset == last:
                gap[1] = offset - 1
            else:
                gap[1] = offset - 1
                self.gaps.insert(i + 1, [offset + 1, last])
            return True
        return False

    def missing(self, target: int) -> int:
        """How many offsets in ``base + 1 .. target`` have not arrived."""
        missing = max(0, target - self.expect + 1)
        for first, last in self.gaps:
            if first > target:
                break
            missing += min(last, target) - first + 1
        return missing

    def complete(self, target: int) -> bool:
        """Whether every offset up to ``target`` has arrived."""
        return self.expect > target and (not self.gaps or self.gaps[0][0] > target)


@dataclass
class Integrity:
    """What a set of streams received, against the targets."""

    lost: int = 0
    lost_on_closed: int = 0
    """Of ``lost``: on connections the server closed (they stopped receiving)."""
    duplicated: int = 0
    out_of_order: int = 0
    incomplete: int = 0
    """Subscribers that miss at least one offset."""

    def add(self, other: Integrity) -> None:
        self.lost += other.lost
        self.lost_on_closed += other.lost_on_closed
        self.duplicated += other.duplicated
        self.out_of_order += other.out_of_order
        self.incomplete += other.incomplete

    @property
    def ok(self) -> bool:
        return self.lost == self.duplicated == self.out_of_order == 0


def integrity(streams: list[Stream], targets: dict[str, int]) -> Integrity:
    """Sum the accounting of ``streams``; ``targets`` maps a room to its highest
    acknowledged offset (a room missing from it expects nothing)."""
    result = Integrity()
    for stream in streams:
        result.duplicated += stream.duplicated
        result.out_of_order += stream.out_of_order
        target = targets.get(stream.room)
        if target is None:
            continue
        missing = stream.missing(target)
        if missing:
            result.lost += missing
            result.incomplete += 1
            if stream.closed:
                result.lost_on_closed += missing
    return result
