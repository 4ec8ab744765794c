"""Which pub/sub link carries a channel, and following a channel's cluster slot.

A single Redis has one link, ``main``. On a Redis Cluster there is one link
per master, made on first use (:meth:`RedisSlotsBase._link_for`), and a room
follows its slot: when the slot moves to another master (a migration, a
replica promoted; Redis says so with a pushed ``sunsubscribe`` or a ``MOVED``
reply, or a dead master's slot shows another owner in the slot map), the room
is held, subscribed on the new owner and resynced the same way as after a
reconnect (:meth:`RedisSlotsBase._rehome`; the resync: redis_resync.py). The
slot map is the cluster client's, read again at most every
:data:`SLOTS_READ_EVERY` seconds.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import random
import time
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import MovedError, RedisClusterException, RedisError

from .broker import BrokerUnavailable
from .redis_pubsub import PubSubLink, SlotMoved, Throttled
from .redis_shards import RedisShardsBase
from .supervise import stop_tasks, supervised

__all__ = ["SLOTS_CHECK_EVERY", "SLOTS_READ_EVERY", "RedisSlotsBase"]

SLOTS_READ_EVERY = 0.5
"""Seconds: the pub/sub side reads the cluster's slot map at most this often."""
SLOTS_CHECK_EVERY = 2.0
"""Seconds: how often a pub/sub link that cannot connect has its slots checked
for a new owner (a replica promoted)."""


class RedisSlotsBase(RedisShardsBase):
    """The pub/sub links by channel, and slot following, of :class:`RedisBroker`."""

    def _init_state(self) -> None:
        super()._init_state()
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

    async def _stop_following(self) -> None:
        """Cancel the tasks following slots, and wait for them."""
        await stop_tasks(*self._rehoming.values(), *self._followers, self._slots_read)

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
        """Read the slot map, then :meth:`_follow_owners` of link ``name``."""
        try:
            await self._read_slots()
        except BrokerUnavailable as exc:
            self._follow_failed("checking the slots of %s: %s", name, exc)
            return
        self._follow_owners(name)

    def _slot_map_read(self) -> None:
        """Someone else updated the slot map (the publish batcher's read after a
        failed batch, or a ``MOVED`` it followed; the command client's read after
        a failed command): the channels of every link that is down follow their
        slots' new owners now (:meth:`_follow_owners`), rather than at that
        link's next check (:meth:`_link_failed`). So a promoted replica gets
        this process's subscriptions as soon as it gets its publishes. Links
        that are up are left alone: a slot that moves away from a live master
        is followed when that master says so (``sunsubscribe``, ``MOVED``),
        as it keeps serving the slot's subscriptions until the move is done."""
        if not self.cluster:
            return
        for name, link in list(self._links.items()):
            if link.wanted and not link.connected:
                self._follow_owners(name)

    def _follow_owners(self, name: str) -> None:
        """Every channel of the (still down) link ``name`` whose slot another node
        serves in the slot map now follows it there (:meth:`_evicted`). The
        rest stay held on ``name`` until it is back. No I/O."""
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
