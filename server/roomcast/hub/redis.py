"""RedisBroker: one room across many processes and machines.

Positions and history live in Redis (layout and scripts: redis_scripts.py):
one Lua script per publish assigns the offset, appends to the room's stream
and publishes, atomically, so history and live order agree. Each process
holds one pub/sub connection (redis_pubsub.py) subscribed to the rooms it has
local subscribers in, and hands every message to the hub as it is read.

Exactly once, in order, across reconnects: the broker remembers, per room,
the position of the last event it delivered, and drops anything at or before
it (a gate: one dict lookup per message). When the pub/sub connection comes
back after a drop, each room is *resynced*: live messages for it are held,
the events after the last delivered one are read from the stream and
delivered, then the held messages, through the same gate. If the history
cannot fill the gap (Redis restarted empty, so the epoch changed, or the gap
is older than the stream keeps), subscribers get a ``reset`` notice with the
room's new position, so they reload.

Presence: this process's entries are re-asserted every ``presence_refresh``
seconds with an expiry ``presence_ttl`` ahead (Redis server time); the same
upkeep removes entries nobody refreshed (a crashed worker's) and publishes a
leave for each, exactly once across processes.

Every Redis error becomes :class:`BrokerUnavailable`: the client gets
``unavailable``, never a silent drop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

import orjson
import redis.asyncio as aioredis
from redis.asyncio.connection import Connection
from redis.exceptions import RedisError

from ..protocol.events import Event, Notice, Position
from . import redis_scripts
from .broker import Broker, BrokerUnavailable, HistoryPage, PresenceEntry, Recovery
from .memory import new_epoch
from .redis_pubsub import PubSubLink

__all__ = ["RedisBroker", "decode_payload", "encode_payload"]

log = logging.getLogger("roomcast.redis")


def encode_payload(ts: float, sender: str, data: bytes) -> bytes:
    """``<ts> <len(sender)> <sender><data>``: see redis_scripts.py."""
    name = sender.encode()
    return b"%r %d %s%s" % (ts, len(name), name, data)


def decode_payload(payload: bytes) -> tuple[float, str, bytes]:
    ts, size, rest = payload.split(b" ", 2)
    n = int(size)
    return float(ts), rest[:n].decode(), rest[n:]


class RedisBroker(Broker):
    """Positions, history, presence and fan-out through Redis."""

    def __init__(
        self,
        url: str,
        *,
        history_size: int = 1000,
        room_ttl: float = 3600.0,
        presence_ttl: float = 30.0,
        presence_refresh: float = 10.0,
        prefix: str = "rc",
        sharded: bool = False,
        timeout: float = 5.0,
    ) -> None:
        super().__init__()
        self.url = url
        self.history_size = history_size
        self.room_ttl = max(1, int(room_ttl))
        self.presence_ttl = presence_ttl
        self.presence_refresh = presence_refresh
        self.prefix = prefix
        self.sharded = sharded
        self.timeout = timeout
        self._publish_cmd = "SPUBLISH" if sharded else "PUBLISH"
        self._client: aioredis.Redis | None = None
        self._link: PubSubLink | None = None
        self._scripts: dict[str, Any] = {}
        self._delivered: dict[str, Position] = {}  # last event delivered, per room
        self._baseline: dict[str, Position] = {}  # position when this process subscribed
        self._held: dict[str, list[Event | Notice]] = {}  # rooms being resynced
        self._presence: dict[str, dict[str, PresenceEntry]] = {}  # this process's entries
        self._upkeep: asyncio.Task[None] | None = None

    # -- naming ---------------------------------------------------------------------

    def _keys(self, room: str, *kinds: str) -> list[str]:
        return [f"{self.prefix}:{{{room}}}:{kind}" for kind in kinds]

    def channel(self, room: str) -> bytes:
        return f"{self.prefix}:{{{room}}}:ch".encode()

    def _room_of(self, channel: bytes) -> str:
        return channel.decode()[len(self.prefix) + 2 : -4]

    # -- lifecycle --------------------------------------------------------------------

    def _connection_kwargs(self) -> dict[str, Any]:
        return {
            "socket_connect_timeout": self.timeout,
            "socket_timeout": self.timeout,
            "health_check_interval": 0,
        }

    def _new_pubsub_connection(self) -> Connection:
        pool = aioredis.ConnectionPool.from_url(self.url, **self._connection_kwargs())
        conn = pool.make_connection()  # type: ignore[no-untyped-call]
        assert isinstance(conn, Connection)
        return conn

    async def start(self) -> None:
        self._client = aioredis.Redis.from_url(self.url, **self._connection_kwargs())
        for name in ("PUBLISH", "RECOVER", "HISTORY", "PRESENCE_ADD", "PRESENCE_LIST", "MAINTAIN"):
            self._scripts[name] = self._client.register_script(getattr(redis_scripts, name))
        self._link = PubSubLink(
            self._new_pubsub_connection,
            self._on_message,
            self._resync_all,
            self._hold_all,
            sharded=self.sharded,
            confirm_timeout=self.timeout,
        )
        await self._link.start(timeout=self.timeout)
        self._upkeep = asyncio.create_task(self._upkeep_forever(), name="roomcast-redis-upkeep")

    async def stop(self) -> None:
        if self._upkeep is not None:
            self._upkeep.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._upkeep
        if self._link is not None:
            await self._link.stop()
        if self._client is not None:
            await self._client.aclose()

    @property
    def ready(self) -> bool:
        return self._link is not None and self._link.connected

    @property
    def reconnects(self) -> int:
        return 0 if self._link is None else self._link.reconnects

    async def _call(self, script: str, keys: list[str], args: list[Any]) -> Any:
        try:
            return await self._scripts[script](keys=keys, args=args)
        except (RedisError, OSError) as exc:
            raise BrokerUnavailable(f"redis: {exc}") from exc

    # -- publishing ---------------------------------------------------------------------

    async def publish(self, room: str, data: bytes, sender: str) -> Event:
        ts = time.time()
        keys = self._keys(room, "meta", "log")
        args = [
            new_epoch(),
            encode_payload(ts, sender, data),
            self.history_size,
            self.room_ttl,
            self.channel(room),
            self._publish_cmd,
        ]
        epoch, offset = await self._call("PUBLISH", keys, args)
        return Event(room, epoch.decode(), int(offset), data, sender, ts)

    async def publish_notice(self, notice: Notice) -> None:
        message = b"!" + orjson.dumps({"type": notice.kind, "room": notice.room, **notice.fields})
        assert self._client is not None
        try:
            await self._client.execute_command(  # type: ignore[no-untyped-call]
                self._publish_cmd, self.channel(notice.room), message
            )
        except (RedisError, OSError) as exc:
            raise BrokerUnavailable(f"redis: {exc}") from exc

    # -- receiving ------------------------------------------------------------------------

    def _on_message(self, channel: bytes, message: bytes) -> None:
        assert self._link is not None
        if channel not in self._link.wanted:
            return  # in flight when this process unsubscribed
        room = self._room_of(channel)
        if message[:1] == b"!":
            fields = orjson.loads(message[1:])
            item: Event | Notice = Notice(fields.pop("type"), fields.pop("room"), fields)
        else:
            epoch, offset, payload = message.split(b" ", 2)
            ts, sender, data = decode_payload(payload)
            item = Event(room, epoch.decode(), int(offset), data, sender, ts)
        held = self._held.get(room)
        if held is not None:
            held.append(item)
        else:
            self._pass(item)

    def _pass(self, item: Event | Notice) -> None:
        """Deliver through the gate: nothing at or before the last position twice."""
        if isinstance(item, Notice):
            self.sink.deliver_notice(item)
            return
        last = self._delivered.get(item.room)
        if last is not None:
            if item.epoch == last.epoch and item.offset <= last.offset:
                return
            if item.epoch != last.epoch:
                self._reset(item.room, Position(item.epoch, 0))
        self._delivered[item.room] = item.position
        self.sink.deliver(item)

    def _reset(self, room: str, position: Position) -> None:
        notice = Notice("reset", room, {"epoch": position.epoch, "offset": position.offset})
        self.sink.deliver_notice(notice)

    def _hold_all(self) -> None:
        """The pub/sub link dropped: hold live messages until each room is resynced."""
        assert self._link is not None
        for channel in self._link.wanted:
            self._held.setdefault(self._room_of(channel), [])

    async def _resync_all(self) -> None:
        await asyncio.gather(*(self._resync(room) for room in list(self._held)))

    async def _resync(self, room: str) -> None:
        since = self._delivered.get(room) or self._baseline.get(room)
        try:
            recovery = await self.recover(room, since)
        except BrokerUnavailable:
            recovery = None  # dropped again: deliver what is held; the next reconnect retries
        if recovery is not None:
            if recovery.recovered:
                for event in recovery.events:
                    self._pass(event)
            else:
                log.warning("room %s lost its history; subscribers are told to reload", room)
                self._reset(room, recovery.position)
                self._delivered[room] = recovery.position
        for item in self._held.pop(room, []):
            self._pass(item)

    # -- subscriptions and reads ------------------------------------------------------------

    async def subscribe(self, room: str) -> None:
        assert self._link is not None
        await self._link.subscribe(self.channel(room))
        self._baseline[room] = (await self.recover(room, None)).position

    async def unsubscribe(self, room: str) -> None:
        assert self._link is not None
        self._link.unsubscribe(self.channel(room))
        self._delivered.pop(room, None)
        self._baseline.pop(room, None)
        self._held.pop(room, None)

    def _events(self, room: str, epoch: str, entries: list[Any]) -> list[Event]:
        events = []
        for entry_id, fields in entries:
            offset = int(entry_id.split(b"-", 1)[0])
            ts, sender, data = decode_payload(fields[1])
            events.append(Event(room, epoch, offset, data, sender, ts))
        return events

    async def recover(self, room: str, since: Position | None) -> Recovery:
        keys = self._keys(room, "meta", "log")
        args = [new_epoch(), self.room_ttl, "" if since is None else since.epoch]
        args.append(0 if since is None else since.offset)
        epoch_b, offset, recovered, entries = await self._call("RECOVER", keys, args)
        epoch = epoch_b.decode()
        position = Position(epoch, int(offset))
        if since is None or not recovered:
            return Recovery(position)
        return Recovery(position, self._events(room, epoch, entries), True)

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
        while True:
            await asyncio.sleep(self.presence_refresh)
            try:
                await self.upkeep()
            except Exception:
                log.warning("presence upkeep failed", exc_info=True)

    async def upkeep(self) -> None:
        """Refresh this process's presence and room keys; announce expired members."""
        assert self._link is not None
        rooms = {self._room_of(channel) for channel in self._link.wanted} | set(self._presence)
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
