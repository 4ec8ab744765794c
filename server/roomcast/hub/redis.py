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

On a Redis Cluster there is one pub/sub link per master, and a room follows
its slot: when the slot moves to another master (a migration, a replica
promoted; Redis says so with a pushed ``sunsubscribe`` or a ``MOVED`` reply,
or a dead master's slot shows another owner in the slot map), the room is held,
subscribed on the new owner and resynced the same way (:meth:`RedisBroker._rehome`).

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

Every Redis error becomes :class:`BrokerUnavailable`: the client gets
``unavailable``, never a silent drop.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import random
import secrets
import time
from typing import Any

import orjson
import redis.asyncio as aioredis
from redis.asyncio.connection import Connection
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff, NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import MovedError, RedisClusterException, RedisError

from ..protocol.events import Event, Notice, Position
from . import redis_scripts
from .broker import (
    Broker,
    BrokerUnavailable,
    HistoryPage,
    PresenceEntry,
    Recovery,
    ShardState,
)
from .memory import new_epoch
from .redis_batch import MAIN, PublishBatcher, node_url
from .redis_pubsub import PubSubLink, SlotMoved, Throttled
from .redis_wire import MalformedMessage, decode_control, decode_live, decode_payload
from .redis_wire import encode_payload as encode_payload
from .stats import STATS
from .supervise import supervised

__all__ = ["RedisBroker", "decode_payload", "encode_payload"]

log = logging.getLogger("roomcast.redis")

SLOTS_READ_EVERY = 0.5
"""Seconds: the pub/sub side reads the cluster's slot map at most this often."""
SLOTS_CHECK_EVERY = 2.0
"""Seconds: how often a pub/sub link that cannot connect has its slots checked
for a new owner (a replica promoted)."""

_raced = [0.0, 0]  # when _client_race last logged; how many since


def _client_race(exc: Exception) -> None:
    """Log a redis-py cluster client failure that is not a RedisError, at most
    every 10 s (a fault makes many at once)."""
    now = time.monotonic()
    _raced[1] += 1
    if now - _raced[0] >= 10:
        log.warning(
            "redis cluster client failed (%s: %s; %d such since the last report): "
            "answered unavailable",
            type(exc).__name__, exc, _raced[1],
        )  # fmt: skip
        _raced[:] = [now, 0]


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
        cluster: bool = False,
        timeout: float = 5.0,
        ping_interval: float = 5.0,
        backoff_cap: float = 2.0,
        max_batch: int = 256,
    ) -> None:
        super().__init__()
        self.url = url
        self.max_batch = max_batch  # most publishes in one pipeline (redis_batch.py)
        self.history_size = history_size
        self.room_ttl = max(1, int(room_ttl))
        self.presence_ttl = presence_ttl
        self.presence_refresh = presence_refresh
        self.prefix = prefix
        self.cluster = cluster
        self.sharded = sharded or cluster
        self.timeout = timeout
        self.ping_interval = ping_interval
        self.backoff_cap = backoff_cap
        self._publish_cmd = "SPUBLISH" if self.sharded else "PUBLISH"
        self.control_channel = f"{prefix}:{{!control}}:ch".encode()
        """Control messages of every process on this prefix. ``!`` is in no room
        name, so no room's channel or keys can meet it."""
        self._node = secrets.token_urlsafe(9).encode()  # marks this broker's own
        self._client: aioredis.Redis | aioredis.RedisCluster | None = None
        self._links: dict[str, PubSubLink] = {}  # "main", or a cluster node's name
        self._wanted: set[bytes] = set()  # channels this process subscribes to
        self._link_lock = asyncio.Lock()
        # Following slots (_evicted, _rehome, _follow_slots): the channels moving to
        # another node, the latest MOVED each got, the shared slot map read.
        self._rehoming: dict[bytes, asyncio.Task[None]] = {}
        self._moved_to: dict[bytes, MovedError] = {}
        self._slots_read: asyncio.Task[None] | None = None
        self._slots_read_at = 0.0
        self._slots_checked: dict[str, float] = {}  # link -> next check on its failures
        self._followers: set[asyncio.Task[None]] = set()
        self._follow_log = Throttled(level=logging.INFO)
        self._follow_failed = Throttled()
        self._scripts: dict[str, Any] = {}
        self._delivered: dict[str, Position] = {}  # last position delivered, per room
        self._held: dict[str, list[Event | Notice]] = {}  # rooms being resynced
        self._presence: dict[str, dict[str, PresenceEntry]] = {}  # this process's entries
        self._upkeep: asyncio.Task[None] | None = None
        self._batcher: PublishBatcher | None = None
        self._publish_failed: dict[str, float] = {}  # node -> when a publish to it failed

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
            # One immediate retry when a pooled connection turns out dead (Redis
            # restarted): the command never reached Redis. None on timeouts: a
            # publish that timed out may have run, and must not run twice.
            "retry": Retry(NoBackoff(), 1, supported_errors=(RedisConnectionError,)),
        }

    def _cluster_kwargs(self) -> dict[str, Any]:
        """The cluster client's (commands other than publishes, and the slot map).

        ``retry`` is the cluster-level retry, which covers timeouts too: none, as
        a script that timed out may have run (NOTICE, MAINTAIN must not run
        twice); a failed command answers ``unavailable`` and the next one reads
        the slot map again first. ``reinitialize_steps=0``: a ``MOVED`` patches
        the slot in the map instead of closing every connection every 5th time
        (redis-py closes them under the commands still using them). Shards that
        serve keep serving while another is down (``require_full_coverage``)."""
        return {
            **self._connection_kwargs(),
            "retry": Retry(ExponentialWithJitterBackoff(cap=self.backoff_cap), 0),
            "require_full_coverage": False,
            "reinitialize_steps": 0,
        }

    def _publish_pool(self, node: str, on_connect: Any) -> aioredis.ConnectionPool:
        """The publish batcher's pool to ``node`` (``main``, or a cluster node's
        ``host:port``; redis_batch.py): this URL's credentials and options, no
        automatic retry (a publish that timed out may have run: it must not run
        twice; a pooled connection Redis closed is made again before use), and
        the script loaded on every new connection."""
        url = self.url if node == MAIN else node_url(self.url, node)
        kwargs = self._connection_kwargs()
        kwargs.update(retry=Retry(NoBackoff(), 0), redis_connect_func=on_connect)
        return aioredis.ConnectionPool.from_url(url, **kwargs)

    def _new_connection(self, host: str | None = None, port: int | None = None) -> Connection:
        if host is None:
            pool = aioredis.ConnectionPool.from_url(self.url, **self._connection_kwargs())
            conn = pool.make_connection()  # type: ignore[no-untyped-call]
            assert isinstance(conn, Connection)
            return conn
        return Connection(host=host, port=port or 6379, **self._connection_kwargs())

    async def start(self) -> None:
        kwargs = self._connection_kwargs()
        if self.cluster:
            cluster = aioredis.RedisCluster.from_url(self.url, **self._cluster_kwargs())
            try:
                await cluster.initialize()
            except (RedisError, OSError) as exc:
                raise BrokerUnavailable(f"redis cluster: {exc}") from exc
            self._client = cluster
        else:
            self._client = aioredis.Redis.from_url(self.url, **kwargs)
        for name in redis_scripts.__all__:
            self._scripts[name] = self._client.register_script(getattr(redis_scripts, name))
        self._batcher = PublishBatcher(
            self._scripts["PUBLISH"],
            self._publish_pool,
            cluster=self._client if isinstance(self._client, aioredis.RedisCluster) else None,
            timeout=self.timeout,
            max_batch=self.max_batch,
            backoff_cap=self.backoff_cap,
            on_result=self.note_publish,
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

    async def _start_link(self, name: str, connect: Any, *, wait: bool = True) -> PubSubLink:
        link = self._links[name] = PubSubLink(
            connect,
            self._on_message,
            functools.partial(self._resync_link, name),
            functools.partial(self._hold_link, name),
            sharded=self.sharded,
            health_interval=self.ping_interval,
            confirm_timeout=self.timeout,
            backoff_cap=self.backoff_cap,
            name=name,
            on_evicted=self._evicted,
            on_connect_failed=functools.partial(self._link_failed, name),
        )
        await link.start(timeout=self.timeout if wait else 0)
        return link

    async def _link_for(self, channel: bytes) -> PubSubLink:
        """The pub/sub link that carries ``channel``: on a cluster, the link to
        its slot's master in the cluster client's slot map. A link that never
        connected yet is waited for (up to ``timeout``); one that is down is
        returned as it is (its subscribe fails at once)."""
        if not self.cluster:
            return self._links["main"]
        node = self._owner(channel)
        link = self._links.get(node.name)
        if link is None:
            async with self._link_lock:  # one link per node, however many rooms ask at once
                link = self._links.get(node.name)
                if link is None:
                    connect = functools.partial(self._new_connection, node.host, int(node.port))
                    link = await self._start_link(node.name, connect, wait=False)
        if link.serial == 0:
            await link.wait_connected(self.timeout)
        return link

    def _owner(self, channel: bytes) -> Any:
        """The master of ``channel``'s slot in the cluster client's slot map."""
        assert isinstance(self._client, aioredis.RedisCluster)
        try:
            node = self._client.get_node_from_key(channel.decode())
        except (RedisError, RedisClusterException) as exc:  # a slot not covered
            raise BrokerUnavailable(f"redis cluster: {exc}") from exc
        if node is None:
            raise BrokerUnavailable("no redis cluster node serves this room")
        return node

    async def stop(self) -> None:
        following = [*self._rehoming.values(), *self._followers, self._slots_read]
        for task in following:
            if task is not None:
                task.cancel()
        for task in following:
            if task is not None:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        if self._batcher is not None:
            await self._batcher.stop()
        if self._upkeep is not None:
            self._upkeep.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._upkeep
        for link in self._links.values():
            await link.stop()
        if self._client is not None:
            await self._client.aclose()

    @property
    def ready(self) -> bool:
        """Started, and some shard is up (:meth:`shards`): a single Redis is ready
        while its link is; a cluster while any of its nodes serves."""
        return self._client is not None and super().ready

    @property
    def publish_pipelines(self) -> int:
        """Pipelines of several publishes sent so far (redis_batch.py)."""
        return 0 if self._batcher is None else self._batcher.batches

    @property
    def reconnects(self) -> int:
        return sum(link.reconnects for link in self._links.values())

    # -- shard state (for /readyz and /metrics) ------------------------------------------

    def shards(self) -> list[ShardState]:
        """Each shard's state, by node name, from what this process knows (no I/O).

        A single Redis is one shard, ``main``, up while its pub/sub link is
        connected (as before shards: a failed publish does not take every
        replica out of a load balancer). A cluster: every master redis-py knows
        of (``host:port``), and every node this process has a pub/sub link to
        while the link still carries channels; up while its link is connected (a
        master with no link here yet counts as up) and no publish to it failed in
        the last ``2 * ping_interval`` seconds (:meth:`note_publish`): as long as
        the link's own health check takes to notice a dead node.
        """
        client = self._client
        if client is None:
            return []
        names = set(self._links)
        if isinstance(client, aioredis.RedisCluster):
            masters = {node.name for node in client.get_primaries()}
            names = masters | {n for n, link in self._links.items() if link.wanted}
        held: dict[str, list[int]] = {}  # link name -> [rooms, messages]
        for room, items in self._held.items():
            channel = self.channel(room)
            for name, carrier in self._links.items():
                if channel in carrier.wanted:
                    counts = held.setdefault(name, [0, 0])
                    counts[0] += 1
                    counts[1] += len(items)
                    break
        recent = time.monotonic() - 2 * self.ping_interval
        states = []
        for name in sorted(names):
            link = self._links.get(name)
            up = link is None or link.connected
            if self.cluster:
                up = up and self._publish_failed.get(name, recent) <= recent
            rooms, messages = held.get(name, (0, 0))
            reconnects = 0 if link is None else link.reconnects
            states.append(ShardState(name, up, reconnects, rooms, messages))
        return states

    def note_publish(self, node: str, ok: bool) -> None:
        """The publish path's word on shard ``node`` (``main``, or a cluster node's
        name): a publish to it succeeded (``ok``) or failed. On a cluster a failure
        marks the shard down in :meth:`shards` for ``2 * ping_interval`` seconds,
        unless a later publish to it succeeds. Cheap: called for every batch."""
        if ok:
            self._publish_failed.pop(node, None)
        else:
            self._publish_failed[node] = time.monotonic()

    async def _call(self, script: str, keys: list[str], args: list[Any]) -> Any:
        try:
            return await self._scripts[script](keys=keys, args=args)
        except (RedisError, OSError) as exc:
            raise BrokerUnavailable(f"redis: {exc}") from exc
        except (AttributeError, RuntimeError, TypeError) as exc:
            if not self.cluster:
                raise
            # redis-py's cluster client closes every connection on CLUSTERDOWN or
            # a slot not covered, under the commands still using them: those fail
            # with these. Redis is away for the moment, as far as the caller knows.
            _client_race(exc)
            raise BrokerUnavailable(f"redis: {type(exc).__name__}: {exc}") from exc

    # -- publishing ---------------------------------------------------------------------

    async def publish(
        self, room: str, data: bytes, sender: str, *, history_size: int | None = None
    ) -> Event:
        return await self.enqueue_publish(room, data, sender, history_size=history_size)

    def enqueue_publish(
        self, room: str, data: bytes, sender: str, *, history_size: int | None = None
    ) -> asyncio.Future[Event]:
        """Queue the PUBLISH script in the batcher (redis_batch.py): publishes
        enqueued one after another run in that order, many per round trip."""
        if self._batcher is None:
            raise BrokerUnavailable("redis: the broker is not started")
        ts = time.time()
        keys = self._keys(room, "meta", "log")
        args = [
            new_epoch(),
            encode_payload(ts, sender, data),
            history_size or self.history_size,
            self.room_ttl,
            self.channel(room),
            self._publish_cmd,
        ]

        def event(reply: Any) -> Event:
            epoch, offset = reply
            return Event(room, epoch.decode(), int(offset), data, sender, ts)

        return self._batcher.enqueue(keys, args, event)

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

    # -- receiving ------------------------------------------------------------------------

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
        self._delivered[room] = newest

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
            try:
                recovery = await self.recover(room, self._delivered.get(room))
                break
            except BrokerUnavailable:
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.backoff_cap)
        if not current():
            return
        if recovery.recovered:
            for event in recovery.events:
                self._pass(event)
        else:
            log.warning("room %s lost its history; subscribers are told to reload", room)
            self._reset(room, recovery.position)
            self._delivered[room] = recovery.position
        for item in self._held.pop(room, []):
            self._pass(item)

    # -- following slots (Redis Cluster) ------------------------------------------------------

    def _evicted(self, channel: bytes, moved: MovedError | None) -> None:
        """A link's node no longer serves ``channel``'s slot (a migration, a
        failover: Redis pushed ``sunsubscribe`` or answered ``MOVED``; or
        :meth:`_follow_slots` found another owner for a dead node's slot). The
        room is held from now on, and :meth:`_rehome` follows the slot (one task
        per channel; a newer MOVED is left for it in ``_moved_to``)."""
        if channel != self.control_channel:
            if channel not in self._wanted:
                return
            room = self._room_of(channel)
            if room not in self._delivered:
                return  # a subscribe() under way: it follows the slot itself
            self._held.setdefault(room, [])
        if moved is not None:
            self._moved_to[channel] = moved
        task = self._rehoming.get(channel)
        if task is not None and not task.done():
            return
        where = "" if moved is None else f" to {moved.host}:{moved.port}"
        self._follow_log("the redis cluster slot of %r moved%s; following it", channel, where)
        task = self._rehoming[channel] = supervised(
            "roomcast-redis-rehome", functools.partial(self._rehome, channel)
        )
        task.add_done_callback(functools.partial(self._rehomed, channel))

    def _rehomed(self, channel: bytes, task: asyncio.Task[None]) -> None:
        if self._rehoming.get(channel) is task:
            del self._rehoming[channel]

    async def _rehome(self, channel: bytes) -> None:
        """Subscribe ``channel`` on its slot's new owner, then resync its room
        from the room's stream (it moved with the slot) through the gate, as after
        a reconnect: a ``reset`` when the stream cannot cover the gap. The room
        stays held meanwhile. A failure is tried again after a jittered backoff,
        while the room is wanted (the control channel: until it is subscribed).
        Ends once the room is released, or once the channel waits on a link that
        is down (that link's reconnect subscribes it and resyncs the room)."""
        control = channel == self.control_channel
        room = None if control else self._room_of(channel)
        delay = 0.05
        first = True  # the first try trusts the slot map: a MOVED corrects it
        while control or channel in self._wanted:
            try:
                moved = self._moved_to.pop(channel, None)
                if moved is not None or not first:
                    await self._learn_slot(moved)
                first = False
                link = await self._link_for(channel)
                if not control and channel not in self._wanted:
                    return  # unsubscribed meanwhile
                if room is not None:
                    self._held.setdefault(room, [])
                for other in self._links.values():
                    if other is not link and channel in other.wanted:
                        other.unsubscribe(channel)
                if not link.connected:
                    link.wanted.add(channel)  # subscribed (and resynced) on its connect
                    return
                await link.subscribe(channel)
            except SlotMoved as exc:
                if exc.moved is not None:
                    self._moved_to[channel] = exc.moved
            except BrokerUnavailable as exc:
                self._follow_failed("following the cluster slot of %r: %s", channel, exc)
            else:
                if room is None:
                    return
                await self._resync(room, link, link.serial)
                if room not in self._held or channel in link.wanted:
                    return  # released; or that link dropped and its reconnect resyncs
                continue  # moved on again meanwhile: follow it
            await asyncio.sleep(random.uniform(0, delay))
            delay = min(delay * 2, self.backoff_cap)

    async def _learn_slot(self, moved: MovedError | None) -> None:
        """Bring the slot map up to date: from a MOVED reply, which names the
        slot's new owner, or else by reading the cluster's map again. (Without a
        cluster there is one node: nothing to learn.)"""
        if not isinstance(self._client, aioredis.RedisCluster):
            return
        if moved is not None and moved.slot_id in self._client.nodes_manager.slots_cache:
            await self._client.nodes_manager.move_slot(moved)
            return
        await self._read_slots()

    async def _read_slots(self) -> None:
        """Read the cluster's slot map again (CLUSTER SLOTS): one read shared by
        every caller, at most one every :data:`SLOTS_READ_EVERY` seconds."""
        assert isinstance(self._client, aioredis.RedisCluster)
        loop = asyncio.get_running_loop()
        task = self._slots_read
        if task is None or (task.done() and loop.time() >= self._slots_read_at + SLOTS_READ_EVERY):
            self._slots_read_at = loop.time()
            task = self._slots_read = loop.create_task(
                self._client.nodes_manager.initialize(), name="roomcast-redis-slots"
            )
            task.add_done_callback(lambda t: t.cancelled() or t.exception())
        try:
            await asyncio.shield(task)
        except (RedisError, RedisClusterException, OSError) as exc:
            raise BrokerUnavailable(f"redis cluster slots: {exc}") from exc

    def _link_failed(self, name: str) -> None:
        """Link ``name`` could not connect: unless done in the last
        :data:`SLOTS_CHECK_EVERY` seconds, check in the background whether its
        slots have another owner now (a replica promoted: :meth:`_follow_slots`)."""
        if not self.cluster:
            return
        now = time.monotonic()
        if now < self._slots_checked.get(name, 0.0):
            return
        self._slots_checked[name] = now + SLOTS_CHECK_EVERY
        task = supervised("roomcast-redis-follow", functools.partial(self._follow_slots, name))
        self._followers.add(task)
        task.add_done_callback(self._followers.discard)

    async def _follow_slots(self, name: str) -> None:
        """Read the slot map; every channel of the (still down) link ``name``
        whose slot another node serves now follows it there (:meth:`_evicted`).
        The rest stay held on ``name`` until it is back."""
        try:
            await self._read_slots()
        except BrokerUnavailable as exc:
            self._follow_failed("checking the slots of %s: %s", name, exc)
            return
        link = self._links.get(name)
        if link is None or link.connected:
            return
        for channel in list(link.wanted):
            try:
                owner = self._owner(channel).name
            except BrokerUnavailable:
                continue
            if owner != name:
                link.unsubscribe(channel)  # down: it only forgets the channel
                self._evicted(channel, None)

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
            self._delivered[room] = baseline
        if channel not in link.wanted:  # its slot moved on while the baseline was read
            self._evicted(channel, None)

    async def _subscribe_on_owner(self, channel: bytes) -> PubSubLink:
        """Subscribe ``channel`` on the link to its slot's owner; when Redis
        answers that the slot moved (the slot map was behind), learn where and
        try there, a few times."""
        for _ in range(3):
            link = await self._link_for(channel)
            try:
                await link.subscribe(channel)
                return link
            except SlotMoved as exc:
                await self._learn_slot(exc.moved)
        raise BrokerUnavailable("redis: the room's cluster slot is moving; try again")

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
