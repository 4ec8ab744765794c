"""A room's place in its stream, as the client sees it: the last message received.

It is what a resume asks from (``since``) and what drops duplicates: a message at or
below it in the same epoch was delivered already. The same rule as roomcast.js's
``Position``.
"""

from __future__ import annotations

from ..protocol.events import Position

__all__ = ["RoomPosition"]


class RoomPosition:
    """The last position seen in one room (``None`` until the first subscribe)."""

    __slots__ = ("epoch", "offset")

    def __init__(self, since: Position | None = None) -> None:
        self.epoch: str | None = since.epoch if since is not None else None
        self.offset = since.offset if since is not None else 0

    @property
    def since(self) -> Position | None:
        """What to resume from: ``None`` before anything was seen."""
        return None if self.epoch is None else Position(self.epoch, self.offset)

    def advance(self, epoch: str, offset: int) -> bool:
        """True when a message at ``(epoch, offset)`` is new; it becomes the position.
        False for one at or below the position in the same epoch: a duplicate."""
        if epoch == self.epoch and offset <= self.offset:
            return False
        self.epoch = epoch
        self.offset = offset
        return True

    def reset(self, epoch: str, offset: int) -> None:
        """Continue from ``(epoch, offset)`` (a subscribe that did not recover, a reset)."""
        self.epoch = epoch
        self.offset = offset

    def __repr__(self) -> str:
        return f"RoomPosition({self.epoch!r}, {self.offset})"
