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

Idempotent publishes: the broker decides, atomically, whether a publish with an
:class:`~.broker.IdempotencyKey` is a duplicate; a :class:`~.broker.Duplicate`
never reaches the archive as a new event, so it never makes a second row. A
plain duplicate is answered at once. A ``durable`` one is answered once the
first publish is known to be committed: its event (when the broker still
retains it) is handed to the archive again, whose inserts are idempotent on
(room, epoch, offset), and the duplicate is answered after that commit (so a
first publish whose commit failed is committed now); when the broker no longer
retains it, the archive is asked whether it holds the row, and if not the
duplicate fails with :class:`PublishedNotPersisted`, like its original.
:func:`submit_duplicate` answers a publish that is a duplicate already when it
arrives without publishing anything (for a caller that must skip work for
duplicates, such as the ``on_publish`` hook).
"""

from __future__ import annotations

import asyncio
import logging

from ..protocol.errors import RoomcastError
from ..protocol.events import Event
from .archive import Archive, ArchiveUnavailable
from .broker import Broker, Duplicate, IdempotencyKey
from .stats import count_published

__all__ = ["DurableNotPersisted", "PublishedNotPersisted", "submit_duplicate", "submit_publish"]

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
    broker: Broker,
    archive: Archive | None,
    room: str,
    data: bytes,
    sender: str,
    durable: bool,
    idempotency: IdempotencyKey | None = None,
) -> asyncio.Future[Event]:
    """Check ``room``, then enqueue the publish with ``broker``.

    Raises DurableNotPersisted when ``durable`` asks for more than the room
    keeps, and ArchiveUnavailable when a persisted room's archive is down (before
    anyone receives the event). The future fails with the broker's Unavailable,
    or for a durable publish with PublishedNotPersisted. With ``idempotency``
    it may complete with a :class:`~.broker.Duplicate` (see the module docstring).
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
    accepted = broker.enqueue_publish(
        room, data, sender, history_size=history_size, idempotency=idempotency
    )
    count_published(accepted)
    if not persist:
        return accepted
    assert archive is not None
    return asyncio.ensure_future(_archived(accepted, archive, durable))


async def submit_duplicate(
    broker: Broker,
    archive: Archive | None,
    room: str,
    idempotency: IdempotencyKey,
    durable: bool,
) -> asyncio.Future[Event] | None:
    """If a publish with ``idempotency`` to ``room`` is a duplicate now, the
    future that answers it as :func:`submit_publish` would (nothing is
    published); None when it is not, and then nothing was done.

    Raises as :func:`submit_publish` for ``durable``; a duplicate needs no
    healthy archive unless it is ``durable``."""
    options = None if archive is None else await archive.options(room)
    persist = options is not None and options.persist
    if durable and not persist:
        raise DurableNotPersisted(f"room {room!r} is not persisted")
    duplicate = await broker.find_duplicate(room, idempotency)
    if duplicate is None:
        return None
    accepted: asyncio.Future[Event] = asyncio.get_running_loop().create_future()
    accepted.set_result(duplicate)
    if not (persist and durable):
        return accepted
    assert archive is not None
    return asyncio.ensure_future(_archived(accepted, archive, durable))


async def _archived(accepted: asyncio.Future[Event], archive: Archive, durable: bool) -> Event:
    """Hand a published event to the archive (``durable``: wait for the commit).
    It has gone out by now: a failure is never ``Unavailable`` from here on."""
    event = await accepted
    if isinstance(event, Duplicate):
        if durable:
            await _committed_duplicate(event, archive)
        return event
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


async def _committed_duplicate(duplicate: Duplicate, archive: Archive) -> None:
    """Return once the first publish of ``duplicate`` is committed; else raise
    PublishedNotPersisted, as for the first publish (it went out)."""
    try:
        if duplicate.original is not None:  # idempotent: no second row if it is there
            await archive.submit(duplicate.original)
            return
        rows = await archive.after(duplicate.room, duplicate.epoch, duplicate.offset - 1, 1)
    except Exception as exc:
        reason = str(exc) or type(exc).__name__
        raise PublishedNotPersisted(duplicate, reason) from exc
    if not rows or rows[0].offset != duplicate.offset:
        reason = "the first publish is no longer retained and not in the database"
        raise PublishedNotPersisted(duplicate, reason)


def _log_archive_failure(committed: asyncio.Future[None]) -> None:
    if not committed.cancelled() and committed.exception() is not None:
        log.error("an event was published but not archived: %s", committed.exception())
