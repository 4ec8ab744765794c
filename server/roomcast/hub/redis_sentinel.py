"""Following the master that Redis Sentinel names (``ROOMCAST_REDIS_SENTINELS``).

With sentinels, every connection to Redis is made through redis-py's
``SentinelConnectionPool`` (redis_client.py): a new connection first asks the
sentinels where the master of ``sentinel_service`` is, and one that reads
``READONLY`` (its server was demoted) is dropped. That finds the new master
for every connection made after a failover, but leaves the ones already open
where they are: after ``SENTINEL FAILOVER``, or any failover the old master
survives, the old master keeps answering as a master until the sentinels get
round to reconfiguring it (seconds), and stays reachable as a replica after
that. Publishes written there meanwhile are lost, and a pub/sub connection
there would never notice anything.

So this layer also listens to the sentinels: one pub/sub connection to one of
them (a :class:`~roomcast.hub.redis_pubsub.PubSubLink`: health PINGs, a
jittered backoff; each connect goes to the next sentinel in the list),
subscribed to ``+switch-master``. On a switch of our service, and on every
(re)connection to a sentinel (a switch may have gone by meanwhile: the
sentinels are asked where the master is), :meth:`RedisSentinelBase._follow_master`
re-points what is open: the pub/sub link ``main`` connects again when it is
not connected to the new master, and again while the connection it gets is not
to that master (:meth:`RedisSentinelBase._check_link`; its rooms are held and
resynced through the gate, as after any drop: redis_resync.py); the connection
pools of the command client and the publish batcher drop their idle connections
and the busy ones once they are released (no publish is sent twice: a batch in flight
keeps its connection and its answers, redis_batch.py); once they are re-pointed,
the batcher's backoff for ``main`` ends (a publish that failed on the old
master must not keep the first one to the new master waiting). Shard naming
stays ``main``; its state counts the switches (``master_switches``, in
/metrics).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Coroutine
from typing import Any

from redis.asyncio.connection import Connection
from redis.asyncio.sentinel import SentinelConnectionPool
from redis.exceptions import RedisError

from .broker import ShardState
from .redis_batch import MAIN
from .redis_pubsub import PubSubLink, Throttled
from .redis_slots import RedisSlotsBase
from .supervise import stop_tasks

__all__ = ["SWITCH_MASTER", "RedisSentinelBase"]

log = logging.getLogger("roomcast.redis")

SWITCH_MASTER = b"+switch-master"
"""The sentinels' channel: ``<name> <old ip> <old port> <new ip> <new port>``."""

CHECK_PAUSE = 0.02
"""Seconds between the first looks at whether the link connected again after a
switch (:meth:`RedisSentinelBase._check_link`); doubling up to :data:`CHECK_PAUSE_CAP`."""
CHECK_PAUSE_CAP = 1.0


class RedisSentinelBase(RedisSlotsBase):
    """Following a Redis Sentinel failover, for :class:`RedisBroker`."""

    def _init_state(self) -> None:
        super()._init_state()
        self._watch: PubSubLink | None = None
        self._next_sentinel = 0
        self._master: tuple[str, int] | None = None
        self.master_switches = 0
        """Times the sentinels named another master for our service (tests, logs)."""
        self._repointing: set[asyncio.Task[None]] = set()
        self._ask_failed = Throttled()

    @property
    def master(self) -> tuple[str, int] | None:
        """The master's ``(host, port)`` as the sentinels last said; None before
        they said (and without sentinels)."""
        return self._master

    async def _open_client(self) -> None:
        await super()._open_client()
        if not self.sentinels:
            return
        self._watch = PubSubLink(
            self._sentinel_connection,
            self._on_sentinel_message,
            self._ask_master,
            lambda: None,
            health_interval=self.ping_interval,
            confirm_timeout=self.timeout,
            backoff_cap=self.backoff_cap,
            name="the redis sentinels",
        )
        self._watch.wanted.add(SWITCH_MASTER)  # subscribed on every connection
        await self._watch.start(timeout=0)

    async def _stop_following(self) -> None:
        await super()._stop_following()
        if self._watch is not None:
            await self._watch.stop()
        await stop_tasks(*self._repointing)

    def _sentinel_connection(self) -> Connection:
        """A connection to the next sentinel in the list (the watch's ``connect``)."""
        host, port = self.sentinels[self._next_sentinel % len(self.sentinels)]
        self._next_sentinel += 1
        kwargs = self._connection_kwargs()
        return Connection(host=host, port=port, password=self._sentinel_password, **kwargs)

    def _on_sentinel_message(self, channel: bytes, message: bytes) -> None:
        """``+switch-master``: follow it when it is about our service."""
        fields = message.split()
        if channel != SWITCH_MASTER or len(fields) != 5:
            return
        if fields[0].decode(errors="replace") != self.sentinel_service:
            return
        try:
            address = fields[3].decode(), int(fields[4])
        except ValueError:
            log.warning("skipped a malformed +switch-master message: %r", message)
            return
        self._follow_master(address)

    async def _ask_master(self) -> None:
        """The watch is (re)subscribed: ask the sentinels where the master is now,
        in case a switch went by while it was away."""
        assert self._sentinel is not None
        try:
            host, port = await self._sentinel.discover_master(self.sentinel_service)
        except (RedisError, OSError) as exc:
            self._ask_failed("asking the redis sentinels for the master: %s", exc)
            return
        self._follow_master((str(host), int(port)))

    def _follow_master(self, address: tuple[str, int]) -> None:
        """The sentinels name ``address`` as the master: what is connected elsewhere
        connects again (see the module docstring). Idempotent."""
        previous, self._master = self._master, address
        if previous is not None and previous != address:
            self.master_switches += 1
            log.warning(
                "redis sentinel: the master of %r is %s:%d now (was %s:%d); following it",
                self.sentinel_service, *address, *previous,
            )  # fmt: skip
            self._spawn_repoint(self._repoint_all())
        link = self._links.get(MAIN)
        if link is None or link.address == address:
            return
        serial = link.serial
        link.reconnect()
        self._spawn_repoint(self._check_link(link, serial))

    async def _repoint_all(self) -> None:
        """Re-point every pool (:meth:`_repoint`), then :meth:`_master_switched`.
        A pool that fails does not stop the others; the first error is raised
        (and logged) once all are done."""
        pools = list(self._sentinel_pools)
        done = await asyncio.gather(*(self._repoint(p) for p in pools), return_exceptions=True)
        self._master_switched()
        for result in done:
            if isinstance(result, BaseException):
                raise result

    async def _repoint(self, pool: SentinelConnectionPool) -> None:
        """Drop ``pool``'s idle connections now and its busy ones when released:
        the next connection asks the sentinels again."""
        await pool.update_active_connections_for_reconnect()  # type: ignore[no-untyped-call,unused-ignore]
        await pool.disconnect(inuse_connections=False)

    def _master_switched(self) -> None:
        """The sentinels named a new master and the pools were re-pointed: what
        waits on the old one's failures may go to the new one now (redis.py: the
        publish batcher's backoff for ``main``). No I/O."""

    def shards(self) -> list[ShardState]:
        """:meth:`RedisShardsBase.shards`, with ``main``'s master switches when
        the sentinels name the master."""
        shards = super().shards()
        if not self.sentinels:
            return shards
        return [
            dataclasses.replace(s, master_switches=self.master_switches) if s.node == MAIN else s
            for s in shards
        ]

    async def _check_link(self, link: PubSubLink, serial: int) -> None:
        """Follow up ``link.reconnect()``, asked when ``serial`` was its latest
        connection: once a later connection is up, it must be to the master the
        sentinels name now. It may not be (a connect under way when the switch came
        asked the sentinels before it; an answer that lagged the switch): then
        connect again, until it is there, or the master changes again (that switch
        has its own check), or the broker stops (which cancels this)."""
        master = self._master
        pause = CHECK_PAUSE
        while True:
            while link.serial <= serial or not link.connected:
                await asyncio.sleep(pause)  # the link connects (and backs off) by itself
                pause = min(pause * 2, CHECK_PAUSE_CAP)
                if self._master != master:
                    return
            if link.address == master or self._master != master:
                return
            log.info(
                "redis pub/sub link came up on %s:%d, not on the master %s:%d: connecting again",
                *(link.address or ("?", 0)), *(master or ("?", 0)),
            )  # fmt: skip
            serial = link.serial
            link.reconnect()

    def _spawn_repoint(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(work, name="roomcast-redis-repoint")
        self._repointing.add(task)
        task.add_done_callback(self._repointed)

    def _repointed(self, task: asyncio.Task[None]) -> None:
        self._repointing.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.warning("re-pointing redis connections failed: %r", task.exception())
