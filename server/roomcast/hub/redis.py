"""RedisBroker: one room across many processes and machines.

Positions and history live in Redis (layout and scripts: redis_scripts.py):
one Lua script per publish assigns the offset, appends to the room's stream
and publishes, atomically, so history and live order agree. Publishes are
batched per Redis node (redis_batch.py). Each process holds one pub/sub
connection (redis_pubsub.py; one per master on a Redis Cluster) subscribed to
the rooms it has local subscribers in, and hands every message to the hub as
it is read.

RedisBroker is built in layers, one concept per module, each a base class of
the next: redis_client.py (settings, clients, naming, script calls),
redis_resync.py (the exactly-once gate; holding and resyncing a room after a
reconnect or a slot move), redis_shards.py (per-shard state for /readyz and
/metrics), redis_slots.py (which link carries a channel; following a room's
cluster slot), redis_sentinel.py (following the master Redis Sentinel names).
This module adds the Broker API on top: lifecycle,
publishing, subscriptions and reads, presence.

Presence: this process's entries are re-asserted every ``presence_refresh``
seconds with an expiry ``presence_ttl`` ahead (Redis server time); the same
upkeep removes entries nobody refreshed (a crashed worker's) and publishes a
leave for each, exactly once across processes.

Control messages (:meth:`RedisBroker.publish_control`) travel on one more
channel per prefix, :attr:`RedisBroker.control_channel`, which every process
subscribes to from :meth:`RedisBroker.start` on. It is no room: no gate, no
hold, no resync, no reset. Each message carries its process's node id; the
sender applies its own at once and drops the echo. At most once: a message
sent while a process's pub/sub link is down is lost for that process.

Idempotency keys (:meth:`RedisBroker.idempotency_key`) are one string each in
the room's slot, looked up and set by the same PUBLISH script that publishes,
so a key is published at most once across every process and a restart.

Every Redis error becomes :class:`BrokerUnavailable`: the client gets
``unavailable``, never a silent drop.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import orjson
import redis.asyncio as aioredis
from redis.exceptions import RedisError

from ..protocol.events import Event, Notice, Position
from .broker import (
    BrokerUnavailable,
    Duplicate,
    HistoryPage,
    IdempotencyKey,
    PresenceEntry,
    Recovery,
)
from .memory import new_epoch
from .redis_batch import MAIN, PublishBatcher
from .redis_sentinel import RedisSentinelBase
from .redis_wire import decode_payload
from .redis_wire import encode_payload as encode_payload
from .supervise import stop_tasks, supervised

__all__ = ["RedisBroker", "decode_payload", "encode_payload"]

log = logging.getLogger("roomcast.redis")


class RedisBroker(RedisSentinelBase):
    """Positions, history, presence and fan-out through Redis.

    Constructed with :class:`~roomcast.hub.redis_client.RedisClientBase`'s
    settings (the Redis URL, history size, TTLs, prefix, cluster, timeouts)."""

    def _init_state(self) -> None:
        super()._init_state()
        self._presence: dict[str, dict[str, PresenceEntry]] = {}  # this process's entries
        self._upkeep: asyncio.Task[None] | None = None
        self._batcher: PublishBatcher | None = None

    # -- lifecycle --------------------------------------------------------------------

    async def start(self) -> None:
        await self._open_client()
        assert self._client is not None
        self._batcher = PublishBatcher(
            self._scripts["PUBLISH"],
            self._publish_pool,
            cluster=self._client if isinstance(self._client, aioredis.RedisCluster) else None,
            timeout=self.timeout,
            max_batch=self.max_batch,
            backoff_cap=self.backoff_cap,
            on_result=self.note_publish,
            on_slot_map=self._slot_map_read,
        )
        if not self.cluster:
            await self._start_link("main", self._new_connection)
        try:  # kept by its link from now on: subscribed again on every reconnect
            await self._subscribe_on_owner(self.control_channel)
        except BrokerUnavailable as exc:
            log.warning("control channel not subscribed yet (%s): it will be on connect", exc)
            if not any(self.control_channel in link.wanted for link in self._links.values()):
                self._evicted(self.control_channel, None)  # no link keeps it: follow it
        self._upkeep = supervised("roomcast-redis-upkeep", self._upkeep_forever)

    async def stop(self) -> None:
        await self._stop_following()
        if self._batcher is not None:
            await self._batcher.stop()
        await stop_tasks(self._upkeep)
        for link in self._links.values():
            await link.stop()
        if self._client is not None:
            await self._client.aclose()
        if self._sentinel is not None:
            await self._sentinel.aclose()

    def _master_switched(self) -> None:
        """A new master behind ``main`` (redis_sentinel.py): publishes go to it at
        once, whatever backoff the old one's failures set."""
        if self._batcher is not None:
            self._batcher.retry_now(MAIN)

    @property
    def publish_pipelines(self) -> int:
        """Pipelines of several publishes sent so far (redis_batch.py)."""
        return 0 if self._batcher is None else self._batcher.batches

    # -- publishing ---------------------------------------------------------------------

    async def publish(
        self,
        room: str,
        data: bytes,
        sender: str,
        *,
        history_size: int | None = None,
        idempotency: IdempotencyKey | None = None,
    ) -> Event:
        return await self.enqueue_publish(
            room, data, sender, history_size=history_size, idempotency=idempotency
        )

    def enqueue_publish(
        self,
        room: str,
        data: bytes,
        sender: str,
        *,
        history_size: int | None = None,
        idempotency: IdempotencyKey | None = None,
    ) -> asyncio.Future[Event]:
        """Queue the PUBLISH script in the batcher (redis_batch.py): publishes
        enqueued one after another run in that order, many per round trip. With
        an idempotency key (and a window), the script first looks the key up and
        answers a :class:`Duplicate` of the first publish, publishing nothing."""
        if self._batcher is None:
            raise BrokerUnavailable("redis: the broker is not started")
        ts = time.time()
        keys = self._keys(room, "meta", "log")
        args: list[Any] = [
            new_epoch(),
            encode_payload(ts, sender, data),
            history_size or self.history_size,
            self.room_ttl,
            self.channel(room),
            self._publish_cmd,
        ]
        if idempotency is not None and self.idempotency_window > 0:
            keys.append(self.idempotency_key(room, idempotency))
            args.append(max(1, round(self.idempotency_window * 1000)))

        def event(reply: Any) -> Event:
            if len(reply) > 2:  # {epoch, offset, 1, payload}: a key seen before
                return self._duplicate(room, reply, data, sender, ts)
            epoch, offset = reply
            return Event(room, epoch.decode(), int(offset), data, sender, ts)

        return self._batcher.enqueue(keys, args, event)

    def idempotency_key(self, room: str, idempotency: IdempotencyKey) -> str:
        """``P:{R}:idem:<bytes of owner>:<owner><key>``: the owner's length makes
        the name unambiguous whatever the owner and key hold (``:`` included),
        and the room's hash tag keeps it in the room's slot."""
        owner = idempotency.owner
        return f"{self.prefix}:{{{room}}}:idem:{len(owner.encode())}:{owner}{idempotency.key}"

    def _duplicate(self, room: str, reply: Any, data: bytes, sender: str, ts: float) -> Duplicate:
        epoch, offset, _, payload = reply
        position = Position(epoch.decode(), int(offset))
        original = None
        if payload:  # the first publish's stream entry, still retained
            then, by, what = decode_payload(payload)
            original = Event(room, position.epoch, position.offset, what, by, then)
        return Duplicate(room, position, original, data, sender, ts)

    async def find_duplicate(self, room: str, idempotency: IdempotencyKey) -> Duplicate | None:
        if self.idempotency_window <= 0:
            return None
        keys = [*self._keys(room, "meta", "log"), self.idempotency_key(room, idempotency)]
        reply = await self._call("DUPLICATE", keys, [])
        return self._duplicate(room, reply, b"null", "", 0.0) if reply else None

    async def publish_notice(self, notice: Notice) -> None:
        message = b"!" + orjson.dumps({"type": notice.kind, "room": notice.room, **notice.fields})
        args = [self._publish_cmd, self.channel(notice.room), message]
        await self._call("NOTICE", self._keys(notice.room, "meta"), args)

    async def publish_control(self, message: dict[str, object]) -> None:
        """Apply ``message`` here, then publish it to the other processes (see
        :meth:`Broker.publish_control`); ``<node id> <JSON>`` on the channel."""
        payload = b"%s %s" % (self._node, orjson.dumps(message))
        self.sink.deliver_control(message)
        args = [self._publish_cmd, self.control_channel, payload]
        await self._call("NOTICE", [self.control_channel.decode()], args)  # key: routing only

    # -- subscriptions and reads ------------------------------------------------------------

    async def subscribe(self, room: str) -> None:
        channel = self.channel(room)
        self._wanted.add(channel)
        try:
            link = await self._subscribe_on_owner(channel)
            baseline = (await self.recover(room, None)).position
        except BaseException:
            await self.unsubscribe(room)
            raise
        # Nobody here is live in the room yet: what is still in flight from before
        # the baseline is dropped by the gate (resumes read it from the stream), so
        # live_position always means "everything up to here was delivered".
        last = self._delivered.get(room)
        if last is None or last.epoch != baseline.epoch or last.offset < baseline.offset:
            self._moved_gate(room, baseline)
        if channel not in link.wanted:  # its slot moved on while the baseline was read
            self._evicted(channel, None)

    def live_position(self, room: str) -> Position | None:
        return self._delivered.get(room)

    async def unsubscribe(self, room: str) -> None:
        channel = self.channel(room)
        self._wanted.discard(channel)
        for link in self._links.values():
            if channel in link.wanted:
                link.unsubscribe(channel)
        self._moved_to.pop(channel, None)
        self._delivered.pop(room, None)
        self._delivered_ts.pop(room, None)
        self._held.pop(room, None)

    async def recover(self, room: str, since: Position | None) -> Recovery:
        return await self._recover(room, since)

    async def history(self, room: str, *, limit: int, before: int | None) -> HistoryPage:
        keys = self._keys(room, "meta", "log")
        args = [new_epoch(), self.room_ttl, "" if before is None else before, limit]
        epoch_b, offset, entries, more = await self._call("HISTORY", keys, args)
        epoch = epoch_b.decode()
        events = self._events(room, epoch, list(reversed(entries)))
        return HistoryPage(Position(epoch, int(offset)), events, bool(more))

    # -- presence ------------------------------------------------------------------------------

    async def presence_add(self, room: str, entry: PresenceEntry) -> None:
        self._presence.setdefault(room, {})[entry.conn] = entry
        keys = self._keys(room, "pres", "pexp")
        args = [self.presence_ttl, self.room_ttl, entry.conn, orjson.dumps(entry.to_dict())]
        await self._call("PRESENCE_ADD", keys, args)

    async def presence_remove(self, room: str, conn: str) -> None:
        local = self._presence.get(room)
        if local is not None:
            local.pop(conn, None)
            if not local:
                del self._presence[room]
        pres, pexp = self._keys(room, "pres", "pexp")
        assert self._client is not None
        try:
            async with self._client.pipeline(transaction=True) as pipe:
                pipe.hdel(pres, conn)
                pipe.zrem(pexp, conn)
                await pipe.execute()
        except (RedisError, OSError) as exc:
            raise BrokerUnavailable(f"redis: {exc}") from exc

    async def presence_list(self, room: str) -> list[PresenceEntry]:
        entries = await self._call("PRESENCE_LIST", self._keys(room, "pres", "pexp"), [])
        return [PresenceEntry(**orjson.loads(raw)) for raw in entries]

    async def _upkeep_forever(self) -> None:
        """:meth:`upkeep` every ``presence_refresh`` seconds. Redis being away is
        expected (a warning, retried next time); anything else is a bug, for the
        supervisor (supervise.py): logged with its traceback, restarted."""
        while True:
            await asyncio.sleep(self.presence_refresh)
            try:
                await self.upkeep()
            except BrokerUnavailable as exc:
                log.warning("presence upkeep failed: %s", exc)

    async def upkeep(self) -> None:
        """Refresh this process's presence and room keys; announce expired members."""
        rooms = {self._room_of(channel) for channel in self._wanted} | set(self._presence)
        await asyncio.gather(*(self._maintain(room) for room in rooms))

    async def _maintain(self, room: str) -> None:
        args: list[Any] = [self.presence_ttl, self.room_ttl]
        for entry in self._presence.get(room, {}).values():
            args += [entry.conn, orjson.dumps(entry.to_dict())]
        keys = self._keys(room, "meta", "log", "pres", "pexp")
        for raw in await self._call("MAINTAIN", keys, args):
            entry = orjson.loads(raw)
            notice = Notice("leave", room, {"user": entry["user"], "conn": entry["conn"]})
            await self.publish_notice(notice)
