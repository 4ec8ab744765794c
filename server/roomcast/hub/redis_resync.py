"""What RedisBroker hands the hub: the gate, holds and resyncs.

Exactly once, in order, across reconnects: the broker remembers, per room,
the position of the last event it delivered (``_delivered``), and drops
anything at or before it (a gate: one dict lookup per message). When a pub/sub
link comes back after a drop, each of its rooms is *resynced*: live messages
for it are held (``_held``), the events after the last delivered one are read
from the stream and delivered, then the held messages, through the same gate.
If the history cannot fill the gap (Redis restarted empty, so the epoch
changed, or the gap is older than the stream keeps), subscribers get a
``reset`` notice with the room's new position, so they reload. A hold is
bounded (``history_size``): past it the gap is given up with a ``reset``.

Control messages are decoded here too (the control channel is no room: no
gate, no hold, no resync); this process's own echo is dropped.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from ..protocol.events import Event, Notice, Position
from .broker import BrokerUnavailable, Recovery
from .memory import new_epoch
from .redis_client import RedisClientBase
from .redis_pubsub import PubSubLink
from .redis_wire import MalformedMessage, decode_control, decode_live, decode_payload
from .stats import STATS

__all__ = ["RedisResyncBase"]

log = logging.getLogger("roomcast.redis")


class RedisResyncBase(RedisClientBase):
    """The delivery gate, holds and resyncs of :class:`RedisBroker`."""

    def _init_state(self) -> None:
        super()._init_state()
        self._delivered: dict[str, Position] = {}  # last position delivered, per room
        # the time of the event at _delivered[room], when it was an event delivered
        # here (not a subscribe's baseline or a reset): the resync's continuity check
        self._delivered_ts: dict[str, float] = {}
        self._held: dict[str, list[Event | Notice]] = {}  # rooms being resynced

    def _on_message(self, channel: bytes, message: bytes) -> None:
        """A message as the link reads it. Never raises: a message that does not
        decode is logged with its channel and skipped; delivery errors: _pass."""
        try:
            if channel not in self._wanted:  # never the control channel: see below
                if channel == self.control_channel:
                    node, control = decode_control(message)
                    if node != self._node:  # this process applied its own when it sent it
                        self._control(control)
                return  # else in flight when this process unsubscribed
            room = self._room_of(channel)
            item = decode_live(room, message)
        except MalformedMessage as exc:
            log.warning("skipped a malformed pub/sub message on %r: %s", channel, exc)
            return
        held = self._held.get(room)
        if held is not None:
            self._hold(room, held, item)
        else:
            self._pass(item)

    def _pass(self, item: Event | Notice) -> None:
        """Deliver through the gate: nothing at or before the last position twice.

        The gate moves once the hub has taken the event (a subscriber that fails
        is the hub's to close: Hub.deliver). Should the hub itself raise, this
        process's subscribers of the room may have missed the event: the error is
        logged with the room and offset, they get a ``reset`` at its position
        (reload: the history has it), and the gate moves on. Never raises.
        """
        if isinstance(item, Notice):
            self._notify(item)
            return
        room = item.room
        last = self._delivered.get(room)
        if last is not None:
            if item.epoch == last.epoch and item.offset <= last.offset:
                return
            if item.epoch != last.epoch:
                self._reset(room, Position(item.epoch, 0))
        try:
            self.sink.deliver(item)
        except Exception:
            log.exception("delivering %s offset %s:%d failed", room, item.epoch, item.offset)
            self._reset(room, item.position)
        self._delivered[room] = item.position
        self._delivered_ts[room] = item.ts

    def _moved_gate(self, room: str, position: Position) -> None:
        """The gate moves to ``position`` without an event delivered there (a
        baseline, a reset): nothing to check continuity against."""
        self._delivered[room] = position
        self._delivered_ts.pop(room, None)

    def _notify(self, notice: Notice) -> None:
        try:
            self.sink.deliver_notice(notice)
        except Exception:
            log.exception("delivering a %s notice in %s failed", notice.kind, notice.room)

    def _control(self, message: dict[str, Any]) -> None:
        try:
            self.sink.deliver_control(message)
        except Exception:
            log.exception("acting on the control message %r failed", message)

    def _reset(self, room: str, position: Position) -> None:
        self._notify(Notice("reset", room, {"epoch": position.epoch, "offset": position.offset}))

    def _rooms_on(self, name: str) -> list[str]:
        """The rooms whose channels link ``name`` carries (not the control channel)."""
        control = self.control_channel
        return [self._room_of(c) for c in self._links[name].wanted if c != control]

    def _hold_link(self, name: str) -> None:
        """A pub/sub link dropped: hold its rooms' live messages until each is resynced."""
        for room in self._rooms_on(name):
            self._held.setdefault(room, [])

    def _hold(self, room: str, held: list[Event | Notice], item: Event | Notice) -> None:
        """Hold ``item`` until ``room`` is resynced, at most ``history_size`` items:
        more events than that since the last delivered one, and the stream no
        longer has the gap anyway. Past it (a resync that keeps failing: Redis out
        of memory under ``noeviction``, read-only after a failover), the hold is
        given up: held notices are passed on, and unless only notices were held,
        subscribers get a ``reset`` at the newest held event (they reload), the
        gate moves there, live messages flow again and the resync stops. Counted
        in /metrics (``roomcast_broker_resyncs_abandoned``)."""
        held.append(item)
        if len(held) <= self.history_size:
            return
        newest = None
        for kept in held:
            if isinstance(kept, Event):
                newest = kept.position
            else:
                self._pass(kept)
        held.clear()
        if newest is None:
            return  # only notices so far: the room stays held for its resync
        del self._held[room]
        log.warning(
            "room %s: resync failing with %d live messages held; gave up the gap, "
            "subscribers are told to reload from %s:%d",
            room, self.history_size + 1, newest.epoch, newest.offset,
        )  # fmt: skip
        STATS.resyncs_abandoned += 1
        self._reset(room, newest)
        self._moved_gate(room, newest)

    async def _resync_link(self, name: str) -> None:
        link = self._links[name]
        serial = link.serial
        rooms = [room for room in self._rooms_on(name) if room in self._held]
        await asyncio.gather(*(self._resync(room, link, serial) for room in rooms))

    async def _resync(self, room: str, link: PubSubLink, serial: int) -> None:
        """Fill the room's gap from the stream, then release what was held.

        Only while the connection this resync is for (``serial``) is up, its
        subscriptions confirmed: if the link dropped, before or during the read,
        what is published until the next connection is subscribed reaches nobody
        live, so the hold must stay for that connection's resync, whose read
        comes after it. Releasing now would pass later live messages over that
        gap (and the gate would then drop the gap's events as delivered). A
        failed read is retried (the held messages wait rather than pass over a gap)
        while the room is held: :meth:`_hold` gives up at its bound, which ends it.
        """

        channel = self.channel(room)

        def current() -> bool:
            return (
                room in self._held
                and link.connected
                and link.serial == serial
                and channel in link.subscribed  # not refused, not moved to another node
            )

        delay = 0.05
        while True:
            if not current():
                return  # unsubscribed, or a newer connection: its resync releases the hold
            since = self._delivered.get(room)
            try:
                recovery = await self._recover(
                    room, since, resync=True, ts=self._delivered_ts.get(room)
                )
                break
            except BrokerUnavailable:
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.backoff_cap)
        if not current():
            return
        held = self._held.pop(room, [])
        if recovery.recovered:
            for event in recovery.events:
                self._pass(event)
        else:
            log.warning("room %s lost its history; subscribers are told to reload", room)
            self._reset(room, recovery.position)
            self._moved_gate(room, recovery.position)
            if since is not None and since.epoch != recovery.position.epoch:
                # what was held of the old epoch is covered by the reset: passed
                # on, the gate would take it for yet another epoch change
                held = [i for i in held if not isinstance(i, Event) or i.epoch != since.epoch]
        for item in held:
            self._pass(item)

    async def _recover(
        self, room: str, since: Position | None, *, resync: bool = False, ts: float | None = None
    ) -> Recovery:
        """The room's position and, when ``since`` is in its epoch and its stream
        still has the events after it, those events (the RECOVER script). With
        ``resync`` (this process's own last delivered position, never a client's)
        the script also checks that the room's positions did not go backwards
        since (``ts``: the time of the event delivered at ``since``) and gives
        the room a new epoch if they did (redis_scripts.RECOVER)."""
        keys = self._keys(room, "meta", "log")
        args: list[Any] = [new_epoch(), self.room_ttl, "" if since is None else since.epoch]
        args.append(0 if since is None else since.offset)
        args += ["1" if resync else "", b"" if ts is None else b"%r" % ts]
        epoch_b, offset, recovered, entries = await self._call("RECOVER", keys, args)
        epoch = epoch_b.decode()
        position = Position(epoch, int(offset))
        if since is None or not recovered:
            return Recovery(position)
        return Recovery(position, self._events(room, epoch, entries), True)

    def _events(self, room: str, epoch: str, entries: list[Any]) -> list[Event]:
        events = []
        for entry_id, fields in entries:
            offset = int(entry_id.split(b"-", 1)[0])
            ts, sender, data = decode_payload(fields[1])
            events.append(Event(room, epoch, offset, data, sender, ts))
        return events
