"""The Hub: which local subscribers are in which room, and fan-out to them.

Fan-out (:meth:`Hub.deliver`) never awaits: the event joins its room's batch,
and at the end of the loop iteration (or once the batch is full) its frame,
encoded once, is written to every live subscriber that takes frames directly
and offered to the bounded outbox of every other (local_room.py). One stalled
client cannot delay any other; a subscriber whose outbox overflows evicts
itself (see subscriber.py).

Subscribing with a position is where gaps and duplicates would come from, so
the handover from replay to live is done here, the same for every broker:

1. the process subscribes to the room at the broker (once per room; later
   subscribers wait for that to complete), so every later event will arrive;
2. the subscriber is registered as *pending* in the room: live events for it
   are buffered, not sent (bounded: :class:`~.local_room.Pending`);
3. the broker is asked for the events after ``since`` (``recover``);
4. in one synchronous step: the caller's ``on_ready`` runs (the transport
   queues its reply), the recovered events are queued, then the buffered live
   events past the last recovered position (same epoch, higher offset);
5. the subscriber turns live once live delivery has reached the end of its
   replay. A broker's live delivery can lag its history (Redis pub/sub is a
   hop behind the stream the replay was read from): until the broker's
   ``live_position`` reaches the replay's end, the subscriber stays pending,
   and events still in flight that it was replayed are dropped on arrival.

Everything published after step 1 is in the recovery, the buffer or still on
its way; the position filter drops what it has already been given.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import Callable, Iterator

from ..protocol.codes import CloseCode
from ..protocol.events import Event, Notice, Position
from . import control
from .archive import Archive, complete_recovery, extend_page
from .broker import Broker, HistoryPage, IdempotencyKey, PresenceEntry, Recovery, Unavailable
from .local_room import LocalRoom, Pending, frame_for, reached
from .publishing import DurableNotPersisted, submit_duplicate, submit_publish
from .running import loop_of
from .stats import STATS
from .subscriber import Subscriber
from .supervise import supervised

__all__ = ["DurableNotPersisted", "Hub"]

log = logging.getLogger("roomcast.hub")


class Hub:
    """Rooms of this process and their local subscribers."""

    def __init__(
        self,
        broker: Broker,
        *,
        presence: bool = True,
        send_timeout: float | None = None,
        archive: Archive | None = None,
        replay_limit: int = 10_000,
        max_rooms: int = 100_000,
    ) -> None:
        self.broker = broker
        self.archive = archive
        self.replay_limit = replay_limit
        self.max_rooms = max_rooms  # rooms with local subscribers: past it, Unavailable
        self.presence_enabled = presence
        self.send_timeout = send_timeout
        self.draining = False
        self._rooms: dict[str, LocalRoom] = {}
        self._subscribers: set[Subscriber] = set()
        self._idle = asyncio.Event()
        self._idle.set()
        self._watchdog: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._batched: list[LocalRoom] = []  # rooms whose batch this iteration flushes
        self._flush_hook = self._flush_batches  # one bound method, shared by every subscriber
        self._loop: asyncio.AbstractEventLoop | None = None  # while started: loop_of()
        broker.bind(self)

    # -- lifecycle ----------------------------------------------------------------

    async def start(self) -> None:
        self.draining = False
        self._loop = asyncio.get_running_loop()
        await self.broker.start()
        timeout = self.send_timeout
        if timeout is not None:
            watch = functools.partial(control.watch_sends, self, timeout)
            self._watchdog = supervised("roomcast-send-watchdog", watch)

    async def stop(self) -> None:
        if self._watchdog is not None:
            self._watchdog.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watchdog
            self._watchdog = None
        await self.broker.stop()
        self._loop = None

    def check_sends(self) -> int:
        """Evict connections whose writer made no progress on a send since the
        previous two calls (the peer stopped reading). Returns how many.

        Called every ``send_timeout / 2`` seconds, so a send stuck for
        ``send_timeout`` is found even when no new traffic fills the outbox.
        """
        return control.evict_stalled(self._subscribers)

    def register(self, sub: Subscriber) -> None:
        """Count a connection as open (for shutdown and stats)."""
        self._subscribers.add(sub)
        self._idle.clear()
        sub.before_close = self._flush_hook

    def unregister(self, sub: Subscriber) -> None:
        self._subscribers.discard(sub)
        if not self._subscribers:
            self._idle.set()

    @property
    def connections(self) -> int:
        return len(self._subscribers)

    def census(self) -> tuple[int, int, int, int]:
        """(WebSocket connections, SSE streams, subscriptions, rooms), for /metrics."""
        sse = subscriptions = 0
        for sub in self._subscribers:
            sse += sub.sse
            subscriptions += len(sub.rooms)
        return len(self._subscribers) - sse, sse, subscriptions, len(self._rooms)

    def room_census(self) -> Iterator[tuple[str, int, int]]:
        """(room, WebSocket subscribers, SSE subscribers) of each room with a
        subscriber here, for the admin page (api/admin.py)."""
        for room, local in list(self._rooms.items()):
            yield room, len(local.live), len(local.live_sse)

    def local_subscribers(self, room: str) -> int:
        local = self._rooms.get(room)
        return 0 if local is None else len(local.live) + len(local.live_sse)

    async def shutdown(self, code: CloseCode = CloseCode.SHUTDOWN, timeout: float = 5.0) -> bool:
        """Close every connection with ``code`` and wait until they are gone.

        Queued frames are still sent before the close. New connections should
        be turned away from now on (:attr:`draining`). Connections still open
        after ``timeout`` seconds (a peer that stopped reading keeps its writer
        blocked) are evicted, which stops their writers, and waited for once
        more. Returns False if some were still open after that.
        """
        self.draining = True
        self._flush_batches()  # what was delivered goes out before the close
        for sub in list(self._subscribers):
            sub.close(code)
        for attempt in range(2):
            try:
                await asyncio.wait_for(self._idle.wait(), timeout)
                return True
            except TimeoutError:
                if attempt == 0:
                    for sub in list(self._subscribers):
                        sub.evict("shutdown")
        return False

    # -- fan-out (BrokerSink) -------------------------------------------------------

    def _batch(self, local: LocalRoom, item: Event | Notice) -> None:
        """Batch ``item`` for ``local``'s live subscribers: sent at the end of this
        loop iteration with whatever else the room gets meanwhile (local_room.py)."""
        if local.add(item):
            batched = self._batched
            batched.append(local)
            if len(batched) == 1:
                loop_of(self._loop).call_soon(self._flush_batches)

    def _flush_batches(self) -> None:
        batched, self._batched = self._batched, []
        for local in batched:
            try:
                local.flush()
            except Exception:  # flush guards each subscriber: this is a bug in the hub
                log.exception("flushing a room's batch failed")

    def deliver(self, event: Event) -> None:
        """Offer ``event`` to every local subscriber of its room. Never awaits."""
        local = self._rooms.get(event.room)
        if local is None:
            return
        STATS.observe_latency(time.time() - event.ts)
        STATS.delivered += len(local.live) + len(local.live_sse)
        if local.live or local.live_sse:
            self._batch(local, event)
        if local.pending:
            caught_up = []
            for sub, pending in local.pending.items():
                pending.hold(event, sub)
                if pending.until is not None and reached(event.position, pending.until):
                    caught_up.append(sub)
            if caught_up:
                self._go_live(local, caught_up)

    def deliver_notice(self, notice: Notice) -> None:
        local = self._rooms.get(notice.room)
        if local is None:
            return
        if local.live or local.live_sse:
            self._batch(local, notice)
        if local.pending:
            for sub, pending in local.pending.items():
                pending.hold(notice, sub)
            if notice.kind == "reset":  # a new epoch: nothing more of the old to wait for
                self._go_live(local, [s for s, p in local.pending.items() if p.until is not None])
        if notice.kind == "deleted":
            control.spawn(self, control.empty_room(self, notice.room))

    def deliver_control(self, message: dict[str, object]) -> None:
        """Act on a control message here (control.py). Never awaits."""
        control.apply(self, message)

    async def close_room(self, room: str) -> None:
        """Tell every process's subscribers of ``room`` it is deleted, and
        unsubscribe them (a ``deleted`` notice through the broker)."""
        await self.broker.publish_notice(Notice("deleted", room, {}))

    # -- subscriptions ---------------------------------------------------------------

    async def _join_room(self, room: str) -> LocalRoom:
        local = self._rooms.get(room)
        if local is not None:
            await asyncio.shield(local.ready)
            return local
        if len(self._rooms) >= self.max_rooms:
            raise Unavailable(f"this process has {self.max_rooms} rooms (max_rooms)")
        local = self._rooms[room] = LocalRoom(asyncio.get_running_loop().create_future())
        try:
            await self.broker.subscribe(room)
        except BaseException as exc:
            if self._rooms.get(room) is local:
                del self._rooms[room]
            local.ready.set_exception(exc if isinstance(exc, Exception) else RuntimeError())
            local.ready.exception()  # retrieved: waiters see it, no "never retrieved" warning
            raise
        local.ready.set_result(None)
        return local

    async def subscribe(
        self,
        sub: Subscriber,
        room: str,
        since: Position | None,
        on_ready: Callable[[Recovery], object],
    ) -> Recovery:
        """Make ``sub`` a live subscriber of ``room``, replaying from ``since``.

        ``on_ready(recovery)`` is called synchronously right before the replay
        is queued, so a reply it queues reaches the client before any event.
        Raises Unavailable (nothing changed) if the broker cannot serve, or if
        ``room`` would be one more than ``max_rooms`` here.

        Presence is announced after ``on_ready``, best effort: if the broker
        fails then, it is logged and the subscription stands, so the client gets
        exactly one reply. (On Redis the entry is kept here and written by the next
        upkeep; only the ``join`` notice is lost.) Announcing before the reply and
        rolling back would turn a presence outage into refused subscribes to rooms
        whose events still flow.
        """
        pending = Pending()
        local: LocalRoom | None = None
        sub.before_close = self._flush_hook
        try:
            local = await self._join_room(room)
            local.pending[sub] = pending
            recovery = pending.settle(await self._recover(room, since))  # bounded buffer
        except BaseException:
            if local is not None:
                local.pending.pop(sub, None)
                await self._leave_room_if_empty(room, local)
            raise
        on_ready(recovery)
        pending.until = recovery.events[-1].position if recovery.events else recovery.position
        self._flush(sub, pending, [frame_for(event, sub) for event in recovery.events])
        STATS.replayed += len(recovery.events)
        if local.pending.get(sub) is not pending:  # unsubscribe_user took it out meanwhile
            sub.offer(frame_for(control.unsubscribed(room), sub))
            await self._leave_room_if_empty(room, local)
            return recovery
        live = self.broker.live_position(room)
        if live is None or reached(live, pending.until):
            del local.pending[sub]
            local.add_live(sub)
        sub.rooms.add(room)
        try:  # best effort: the reply is out and the subscription stands (see above)
            if await self._presence_in(room):
                await self._announce(sub, room, "join")
                if room not in sub.rooms:  # taken out meanwhile: its leave may have gone first
                    await self._announce(sub, room, "leave")
        except Unavailable as exc:
            log.warning("join of %s in %s not announced: %s", sub.conn_id, room, exc)
        except Exception:
            log.exception("join of %s in %s not announced", sub.conn_id, room)
        return recovery

    async def _recover(self, room: str, since: Position | None) -> Recovery:
        recovery = await self.broker.recover(room, since)
        if recovery.recovered or since is None or self.archive is None:
            return recovery
        return await complete_recovery(
            self.broker, self.archive, room, since, recovery, self.replay_limit
        )

    async def _presence_in(self, room: str) -> bool:
        if not self.presence_enabled:
            return False
        if self.archive is None:
            return True
        try:
            return (await self.archive.options(room)).presence
        except Unavailable:
            return True

    @staticmethod
    def _flush(sub: Subscriber, pending: Pending, frames: list[str]) -> None:
        """Queue ``frames`` and what ``pending`` buffered past its ``until``."""
        until = pending.until
        assert until is not None
        for item in pending.take():
            if isinstance(item, Event):
                if item.epoch == until.epoch and item.offset <= until.offset:
                    continue
                until = item.position
            frames.append(frame_for(item, sub))
        pending.until = until
        sub.offer_replay(frames)

    def _go_live(self, local: LocalRoom, subs: list[Subscriber]) -> None:
        for sub in subs:
            self._flush(sub, local.pending.pop(sub), [])
            local.add_live(sub)

    async def unsubscribe(self, sub: Subscriber, room: str) -> None:
        """Remove ``sub`` from ``room``; announces the leave. Idempotent."""
        sub.rooms.discard(room)
        local = self._rooms.get(room)
        if local is None or not local.remove(sub):
            return
        try:
            if await self._presence_in(room):
                await self._announce(sub, room, "leave")
        finally:
            await self._leave_room_if_empty(room, local)

    async def disconnect(self, sub: Subscriber) -> None:
        """Clean up after a connection: leave every room, unregister."""
        try:
            for room in list(sub.rooms):
                try:
                    await self.unsubscribe(sub, room)
                except Exception:  # the broker may be down; leave the rest anyway
                    log.warning("cleanup of %s in %s failed", sub.conn_id, room, exc_info=True)
        finally:
            self.unregister(sub)

    async def _leave_room_if_empty(self, room: str, local: LocalRoom) -> None:
        if local.empty() and self._rooms.get(room) is local:
            del self._rooms[room]
            await self.broker.unsubscribe(room)

    async def _announce(self, sub: Subscriber, room: str, kind: str) -> None:
        if kind == "join":
            await self.broker.presence_add(room, PresenceEntry(sub.conn_id, sub.user, time.time()))
        else:
            await self.broker.presence_remove(room, sub.conn_id)
        await self.broker.publish_notice(
            Notice(kind, room, {"user": sub.user, "conn": sub.conn_id})
        )

    # -- requests --------------------------------------------------------------------

    async def publish(
        self,
        room: str,
        data: bytes,
        sender: str,
        *,
        durable: bool = False,
        idempotency: IdempotencyKey | None = None,
    ) -> Event:
        """Publish through the broker; for a persisted room also archive the event
        (``durable``: return only once it is committed).

        ``idempotency``: a publish whose key was used in the room within the
        window returns a :class:`~.broker.Duplicate` of the first one and is not
        published again (publishing.py).

        Raises Unavailable when the broker or, for a persisted room, the archive
        cannot take it; DurableNotPersisted when ``durable`` asks for more than
        the room keeps.
        """
        return await (
            await self.submit_publish(room, data, sender, durable=durable, idempotency=idempotency)
        )

    async def submit_publish(
        self,
        room: str,
        data: bytes,
        sender: str,
        *,
        durable: bool = False,
        idempotency: IdempotencyKey | None = None,
    ) -> asyncio.Future[Event]:
        """The first half of :meth:`publish`: check the room, then hand the event to
        the broker, which fixes its place (publishing.py). Submissions awaited one
        after another get offsets in that order, so a connection may submit its next
        publish before the previous one is answered. The future completes as
        :meth:`publish` would return (or raise)."""
        return await submit_publish(
            self.broker, self.archive, room, data, sender, durable, idempotency
        )

    async def submit_duplicate(
        self, room: str, idempotency: IdempotencyKey, *, durable: bool = False
    ) -> asyncio.Future[Event] | None:
        """If a publish with ``idempotency`` is a duplicate already, the future that
        answers it as :meth:`submit_publish` would, with nothing published; None
        when it is not (then submit the publish: the broker decides again)."""
        return await submit_duplicate(self.broker, self.archive, room, idempotency, durable)

    async def disconnect_user(self, user_id: str, code: CloseCode) -> None:
        """Close every connection of ``user_id`` (:attr:`Subscriber.user_id`) with
        ``code`` on every process (control.py); what is queued still goes out first.

        Raises Unavailable when the broker cannot tell the other processes (this
        one has acted all the same: the call is idempotent, retry it)."""
        await self.broker.publish_control(control.disconnect_message(user_id, code))

    async def unsubscribe_user(self, user_id: str, room: str) -> None:
        """Take ``user_id`` out of ``room`` on every process: each subscriber gets no
        more of the room, then an ``unsubscribed`` notice; a ``leave`` is announced.
        Errors as :meth:`disconnect_user`."""
        await self.broker.publish_control(control.unsubscribe_message(user_id, room))

    async def history(self, room: str, *, limit: int, before: int | None) -> HistoryPage:
        page = await self.broker.history(room, limit=limit, before=before)
        if len(page.events) >= limit or self.archive is None:
            return page
        return await extend_page(self.archive, room, page, limit, before)

    async def presence(self, room: str) -> list[PresenceEntry]:
        return await self.broker.presence_list(room)
