"""The publish batcher's queues, one per Redis node, and what happens to the calls
waiting in them: deadlines, failures and backoff.

:class:`PublishQueuesBase` is the bottom of
:class:`~roomcast.hub.redis_batch.PublishBatcher` (redis_batch.py adds enqueueing,
sending the batches and following ``MOVED`` / ``ASK``). It owns the batcher's
constructor and state: a queued call (:class:`_Item`), each node's queue, pool,
flusher, deadline timer and failure state (:class:`_Shard`, made on first use by
:meth:`~PublishQueuesBase._shard`, whose connections load the script as they
connect), and on a cluster the node each slot's pending calls stick to
(:class:`_Pin`). One timer per node answers every call still pending past its
deadline with :class:`BrokerUnavailable`. A failed batch sets the node's
full-jitter backoff and asks for the cluster's slot map to be read again (at most
every :data:`REFRESH_EVERY` seconds); ``on_slot_map()`` hears of each read that
succeeded and of each slot a ``MOVED`` re-pointed (the broker's pub/sub side
follows a promoted replica from it at once: redis_slots.py). Unexpected errors
are logged at most once every :data:`LOG_EVERY` seconds per kind
(redis_throttle.py).
"""

from __future__ import annotations

import asyncio
import collections
import logging
import random
import time
from collections.abc import Callable
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.connection import AbstractConnection
from redis.commands.core import AsyncScript

from .broker import BrokerUnavailable
from .redis_throttle import SINCE_THE_LAST_REPORT, Throttled

__all__ = ["BACKOFF_BASE", "LOG_EVERY", "PoolFor", "PublishQueuesBase", "REFRESH_EVERY"]

log = logging.getLogger("roomcast.redis")

LOG_EVERY = 10.0
"""Seconds between two logs of an unexpected error of the same kind."""

BACKOFF_BASE = 0.05
"""Seconds: the most a node's first retry waits after a failed batch."""

REFRESH_EVERY = 0.5
"""Seconds: the slot map is read again at most this often on failures."""

ConnectFunc = Callable[[AbstractConnection], Any]
PoolFor = Callable[[str, ConnectFunc], aioredis.ConnectionPool]
"""``(node, on_connect) -> pool``: a connection pool to ``node`` (``main``, or
``host:port``) whose connections run ``on_connect`` when they connect."""


class _Item:
    __slots__ = ("args", "deadline", "future", "keys", "make", "shard", "slot")

    def __init__(
        self,
        keys: list[str],
        args: list[Any],
        future: asyncio.Future[Any],
        make: Callable[[Any], Any],
        deadline: float,
    ) -> None:
        self.keys = keys
        self.args = args
        self.future = future
        self.make = make
        self.deadline = deadline
        self.slot = 0
        self.shard: _Shard | None = None


class _Shard:
    """One node's queue, flusher, pool, deadline timer and failure state."""

    __slots__ = (
        "backoffs",
        "failures",
        "flusher",
        "inflight",
        "name",
        "pool",
        "queue",
        "retry_at",
        "timer",
        "timer_at",
        "wake",
    )

    def __init__(self, name: str, pool: aioredis.ConnectionPool) -> None:
        self.name = name
        self.pool = pool
        self.queue: collections.deque[_Item] = collections.deque()
        self.inflight: list[_Item] = []
        self.flusher: asyncio.Task[None] | None = None
        self.timer: asyncio.TimerHandle | None = None
        self.timer_at = 0.0
        self.failures = 0  # failed batches in a row
        self.backoffs = 0  # of them, since the backoff last started again (retry_now)
        self.retry_at = 0.0  # loop time before which no batch goes out
        self.wake = asyncio.Event()  # cuts a backoff short (retry_now)


class _Pin:
    """A slot's calls pending on one node: later ones follow them there."""

    __slots__ = ("count", "shard")

    def __init__(self, shard: _Shard) -> None:
        self.shard = shard
        self.count = 1


class PublishQueuesBase:
    """The constructor, per-node queues, deadlines and backoff of :class:`PublishBatcher`."""

    def __init__(
        self,
        script: AsyncScript,
        pool_for: PoolFor,
        *,
        cluster: aioredis.RedisCluster | None = None,
        timeout: float = 5.0,
        max_batch: int = 256,
        backoff_cap: float = 2.0,
        on_result: Callable[[str, bool], None] | None = None,
        on_slot_map: Callable[[], None] | None = None,
    ) -> None:
        self._script = script
        self._pool_for = pool_for
        self._cluster = cluster
        self.timeout = timeout
        self.max_batch = max_batch
        self.backoff_cap = backoff_cap
        self._on_result = on_result
        self._on_slot_map = on_slot_map
        self._shards: dict[str, _Shard] = {}
        self._pins: dict[int, _Pin] = {}  # slot -> the node its pending calls wait on
        self._refresh: asyncio.Task[None] | None = None
        self._refreshed = -REFRESH_EVERY
        # Logged at most once every LOG_EVERY seconds per kind (redis_throttle.py).
        self._warn_refresh = self._throttled(logging.WARNING)
        self._bad_reply = self._throttled(logging.ERROR)
        self._unexpected_by_type: dict[str, Throttled] = {}
        self.batches = 0  # batches of several calls sent (for tests and the curious)

    # -- queues -----------------------------------------------------------------------

    def _shard(self, name: str) -> _Shard:
        shard = self._shards.get(name)
        if shard is None:
            shard = self._shards[name] = _Shard(name, self._pool_for(name, self._on_connect))
        return shard

    def _route(self, slot: int) -> _Shard:
        pin = self._pins.get(slot)
        if pin is not None and pin.shard.failures == 0:
            return pin.shard  # calls of this slot still pending on a node that answers
        assert self._cluster is not None
        try:
            node = self._cluster.nodes_manager.get_node_from_slot(slot)
        except Exception as exc:  # SlotNotCoveredError; KeyError while the map is rebuilt
            raise BrokerUnavailable(f"redis cluster: no node serves slot {slot}") from exc
        return self._shard(node.name)

    def _pin(self, item: _Item, shard: _Shard) -> None:
        item.shard = shard
        if self._cluster is None:
            return
        pin = self._pins.get(item.slot)
        if pin is not None and pin.shard is shard:
            pin.count += 1
        else:
            self._pins[item.slot] = _Pin(shard)

    def _leave(self, item: _Item) -> None:
        """``item`` is no longer pending on its shard (answered, failed, moved)."""
        shard, item.shard = item.shard, None
        if self._cluster is None or shard is None:
            return
        pin = self._pins.get(item.slot)
        if pin is not None and pin.shard is shard:
            pin.count -= 1
            if pin.count <= 0:
                del self._pins[item.slot]

    # -- deadlines --------------------------------------------------------------------

    def _arm(self, shard: _Shard, when: float) -> None:
        if shard.timer is not None:
            if shard.timer_at <= when:
                return
            shard.timer.cancel()
        shard.timer = asyncio.get_running_loop().call_at(when, self._expire, shard)
        shard.timer_at = when

    def _expire(self, shard: _Shard) -> None:
        """Fail what is past its deadline on ``shard``, sent or still queued."""
        shard.timer = None
        now = asyncio.get_running_loop().time()
        late = f"redis: node {shard.name} did not answer within {self.timeout:g} s"
        following = None
        for item in shard.inflight:  # they leave the shard when their batch ends
            if item.future.done():
                continue
            if item.deadline <= now:
                item.future.set_exception(BrokerUnavailable(late))
            elif following is None or item.deadline < following:
                following = item.deadline
        queue = shard.queue
        while queue and (queue[0].deadline <= now or queue[0].future.done()):
            item = queue.popleft()
            self._leave(item)
            if not item.future.done():
                item.future.set_exception(BrokerUnavailable(late))
        if queue and (following is None or queue[0].deadline < following):
            following = queue[0].deadline
        if following is not None:
            self._arm(shard, following)

    # -- failing a node's calls -------------------------------------------------------

    def _fail_all(self, shard: _Shard, error: str) -> None:
        for item in [*shard.inflight, *shard.queue]:
            self._leave(item)
            if not item.future.done():
                item.future.set_exception(BrokerUnavailable(error))
        shard.inflight = []
        shard.queue.clear()

    # -- a node's connections ---------------------------------------------------------

    async def _on_connect(self, conn: AbstractConnection) -> None:
        """Each new connection: the usual handshake, then the script, so a node that
        restarted empty answers the batch's EVALSHAs."""
        await conn.on_connect()
        await conn.send_command("SCRIPT", "LOAD", self._script.script, check_health=False)
        await conn.read_response()

    # -- failures and backoff -----------------------------------------------------------

    def _failed(self, shard: _Shard, exc: BaseException) -> None:
        if shard.failures == 0:
            log.warning(
                "publishing to redis node %s failed (%s); its publishes answer unavailable "
                "and it is retried with backoff",
                shard.name,
                exc,
            )
        shard.failures += 1
        shard.backoffs += 1
        ceiling = min(self.backoff_cap, BACKOFF_BASE * 2 ** min(shard.backoffs - 1, 30))
        shard.retry_at = asyncio.get_running_loop().time() + random.uniform(0, ceiling)
        self._request_refresh()

    def _succeeded(self, shard: _Shard) -> None:
        if shard.failures:
            log.warning(
                "publishing to redis node %s works again (after %d failed batches)",
                shard.name,
                shard.failures,
            )
        shard.failures = 0
        shard.backoffs = 0
        shard.retry_at = 0.0

    def retry_now(self, name: str) -> None:
        """Node ``name`` is another server now (Redis Sentinel named a new master
        for ``main``: redis_sentinel.py): its next batch goes out at once, not
        after the backoff earned by the old one, and a failure there backs off
        from the start again. The failure count (for the logs) stays."""
        shard = self._shards.get(name)
        if shard is None:
            return
        shard.backoffs = 0
        shard.retry_at = 0.0
        shard.wake.set()

    def _request_refresh(self) -> None:
        """Read the cluster's slot map again soon (a replica may have taken over),
        at most every :data:`REFRESH_EVERY` seconds, in the background."""
        if self._cluster is None or (self._refresh is not None and not self._refresh.done()):
            return
        now = time.monotonic()
        if now - self._refreshed < REFRESH_EVERY:
            return
        self._refreshed = now
        self._refresh = asyncio.get_running_loop().create_task(
            self._refresh_map(), name="roomcast-redis-slots"
        )

    async def _refresh_map(self) -> None:
        assert self._cluster is not None
        try:
            await self._cluster.nodes_manager.initialize()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # no node reachable: the next failure asks again
            self._warn_refresh("reading the redis cluster's slots: %s", exc)
        else:
            self._slot_map_changed()

    # -- logs ---------------------------------------------------------------------------

    @staticmethod
    def _throttled(level: int) -> Throttled:
        return Throttled(LOG_EVERY, level, log, note=SINCE_THE_LAST_REPORT)

    def _unexpected(self, exc: BaseException) -> Throttled:
        """The ERROR line for an unexpected exception: one throttle per type."""
        kind = type(exc).__name__
        throttled = self._unexpected_by_type.get(kind)
        if throttled is None:
            throttled = self._unexpected_by_type[kind] = self._throttled(logging.ERROR)
        return throttled

    def _slot_map_changed(self) -> None:
        """Tell ``on_slot_map`` that the slot map was updated."""
        if self._on_slot_map is not None:
            self._on_slot_map()
