"""The Archive interface: where persisted rooms keep their messages for good.

A broker keeps a bounded history; rooms created with ``persist`` also hand
every event to an archive (db/ implements it over SQL). The hub uses it to

* acknowledge a ``durable`` publish only once the event is committed;
* refuse a publish to a persisted room with ``unavailable`` while the archive
  cannot take it, before the event is fanned out (never delivered but lost);
* fill a resume whose gap is older than the broker's history;
* serve history older than the broker's.

The hub imports no SQL: it sees only this interface.
"""

from __future__ import annotations

import abc
import asyncio
import logging
from dataclasses import dataclass

from ..protocol.events import Event, Position
from .broker import Broker, HistoryPage, Recovery, Unavailable

__all__ = ["Archive", "ArchiveUnavailable", "RoomOptions", "complete_recovery", "extend_page"]

log = logging.getLogger("roomcast.hub")


class ArchiveUnavailable(Unavailable):
    """The archive cannot take or serve events now (the database is down)."""


@dataclass(frozen=True, slots=True)
class RoomOptions:
    """A room's options; rooms nobody created have the defaults."""

    persist: bool = False
    presence: bool = True
    history_size: int | None = None


class Archive(abc.ABC):
    @abc.abstractmethod
    async def options(self, room: str) -> RoomOptions:
        """The room's options (may be cached for a few seconds)."""

    @property
    @abc.abstractmethod
    def healthy(self) -> bool:
        """Whether the archive can take events now."""

    @abc.abstractmethod
    def submit(self, event: Event) -> asyncio.Future[None]:
        """Queue ``event`` for the next commit; the future resolves once it is
        committed, or fails with ArchiveUnavailable. Raises ArchiveUnavailable
        at once when the archive cannot take it."""

    @abc.abstractmethod
    async def after(self, room: str, epoch: str, offset: int, limit: int) -> list[Event]:
        """Up to ``limit`` events of ``epoch`` with offsets above ``offset``, oldest first."""

    @abc.abstractmethod
    async def before(self, room: str, epoch: str, before: int, limit: int) -> list[Event]:
        """Up to ``limit`` events of ``epoch`` with offsets below ``before``, oldest first."""


async def complete_recovery(
    broker: Broker,
    archive: Archive,
    room: str,
    since: Position,
    recovery: Recovery,
    limit: int,
) -> Recovery:
    """Fill a resume the broker could not (its gap is older than the broker's
    history) from the archive, when the room is persisted and the archive holds
    every event from ``since`` up to what the broker still has."""
    if since.epoch != recovery.position.epoch or since.offset > recovery.position.offset:
        return recovery  # another epoch (history lost) or a position that never was
    try:
        if not (await archive.options(room)).persist:
            return recovery
        older = await archive.after(room, since.epoch, since.offset, limit)
    except Unavailable:
        log.warning("archive unavailable; the resume in %s falls back to the broker", room)
        return recovery
    if not older or older[0].offset != since.offset + 1:
        return recovery
    if older[-1].offset - older[0].offset + 1 != len(older):
        return recovery  # the archive itself has a hole
    rest = await broker.recover(room, older[-1].position)
    if not rest.recovered:
        return recovery  # still too far behind: more than ``limit`` events
    return Recovery(rest.position, older + rest.events, True)


async def extend_page(
    archive: Archive, room: str, page: HistoryPage, limit: int, before: int | None
) -> HistoryPage:
    """Complete a short history page of a persisted room with older events from
    the archive."""
    first = page.events[0].offset if page.events else (before or page.position.offset + 1)
    if first <= 1 or not (await archive.options(room)).persist:
        return page
    older = await archive.before(room, page.position.epoch, first, limit - len(page.events))
    if not older:
        return page
    return HistoryPage(page.position, older + page.events, older[0].offset > 1)
