"""RedisBroker's shards as this process sees them, for /readyz and /metrics.

A single Redis is one shard, ``main``; a cluster has one per master. No I/O:
the state comes from the pub/sub links (connected, reconnects), the rooms held
for a resync (redis_resync.py) and the publish path's last word on each node
(:meth:`RedisShardsBase.note_publish`, called by the batcher).
"""

from __future__ import annotations

import time

import redis.asyncio as aioredis

from .broker import ShardState
from .redis_resync import RedisResyncBase

__all__ = ["RedisShardsBase"]


class RedisShardsBase(RedisResyncBase):
    """Readiness and per-shard state of :class:`RedisBroker`."""

    def _init_state(self) -> None:
        super()._init_state()
        self._publish_failed: dict[str, float] = {}  # node -> when a publish to it failed

    @property
    def ready(self) -> bool:
        """Started, and some shard is up (:meth:`shards`): a single Redis is ready
        while its link is; a cluster while any of its nodes serves."""
        return self._client is not None and super().ready

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
