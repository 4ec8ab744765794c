"""The publish path: check the room, hand the event to the broker, archive it.

:func:`submit_publish` is :meth:`Hub.submit_publish <roomcast.hub.hub.Hub.submit_publish>`:
everything up to the broker fixing the event's place runs before it returns;
the future it returns completes with the event once the broker answered and, for
a persisted room, the archive took it (``durable``: committed it).

Two different failures, two different answers: refused before anyone received
the event (the broker or a persisted room's archive cannot take it now):
``Unavailable``, the client may simply retry. Delivered live, then not
committed (the archive failed after the broker published it): a durable
publish raises :class:`PublishedNotPersisted` (``not_persisted``), which a
retry would deliver twice; a plain one is answered as usual and the failure
logged (plain publishes are answered once the broker has them).
"""

from __future__ import annotations

import asyncio
import logging

from ..protocol.errors import RoomcastError
from ..protocol.events import Event
from .archive import Archive, ArchiveUnavailable
from .broker import Broker
from .stats import count_published

__all__ = ["DurableNotPersisted", "PublishedNotPersisted", "submit_publish"]

log = logging.getLogger("roomcast.hub")


class DurableNotPersisted(RoomcastError, ValueError):
    """A durable publish to a room that is not persisted: nothing could make it durable."""


class PublishedNotPersisted(RoomcastError):
    """A durable publish that went out (live, and into the broker's history at
    :attr:`event`'s position) but was not committed to the database. Publishing
    it again would deliver it twice: check the room's history first."""

    def __init__(self, event: Event, reason: str) -> None:
        super().__init__(f"published as {event.epoch}:{event.offset}, not persisted: {reason}")
        self.event = event


async def submit_publish(
    broker: Broker, archive: Archive | None, room: str, data: bytes, sender: str, durable: bool
) -> asyncio.Future[Event]:
    """Check ``room``, then enqueue the publish with ``broker``.

    Raises DurableNotPersisted when ``durable`` asks for more than the room
    keeps, and ArchiveUnavailable when a persisted room's archive is down (before
    anyone receives the event). The future fails with the broker's Unavailable,
    or for a durable publish with PublishedNotPersisted.
    """
    options = None if archive is None else await archive.options(room)
    persist = options is not None and options.persist
    if durable and not persist:
        raise DurableNotPersisted(f"room {room!r} is not persisted")
    if persist:
        assert archive is not None
        if not archive.healthy:  # refuse before anyone receives it
            raise ArchiveUnavailable("the archive is unavailable")
    history_size = None if options is None else options.history_size
    accepted = broker.enqueue_publish(room, data, sender, history_size=history_size)
    count_published(accepted)
    if not persist:
        return accepted
    assert archive is not None
    return asyncio.ensure_future(_archived(accepted, archive, durable))


async def _archived(accepted: asyncio.Future[Event], archive: Archive, durable: bool) -> Event:
    """Hand a published event to the archive (``durable``: wait for the commit).
    It has gone out by now: a failure is never ``Unavailable`` from here on."""
    event = await accepted
    try:
        committed = archive.submit(event)
        if not durable:
            committed.add_done_callback(_log_archive_failure)
            return event
        await committed
    except Exception as exc:  # the writer has logged a failed commit; a refusal is new
        if durable:
            raise PublishedNotPersisted(event, str(exc) or type(exc).__name__) from exc
        log.error("an event was published but not archived: %s", exc)
    return event


def _log_archive_failure(committed: asyncio.Future[None]) -> None:
    if not committed.cancelled() and committed.exception() is not None:
        log.error("an event was published but not archived: %s", committed.exception())
