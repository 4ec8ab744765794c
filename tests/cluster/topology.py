"""The drills' Redis Cluster (drill.py): roomcast.testing's three masters with a
node timeout of the drill's choosing, rooms picked per shard, the cluster's
state, and a slot moved by hand as ``redis-cli --cluster reshard`` does."""

from __future__ import annotations

import itertools
from pathlib import Path

import redis.asyncio as aioredis

from roomcast.testing import RedisCluster, RedisServer

PREFIX = "drill"
"""The drills' ``redis_prefix``: a room's keys are ``drill:{room}:...``."""


def start_cluster(folder: Path, *, node_timeout_ms: int, full_coverage: bool) -> RedisCluster:
    """roomcast.testing's three-master cluster with the drill's node timeout and,
    unless ``full_coverage``, ``cluster-require-full-coverage no``."""
    cluster = RedisCluster(folder)
    for node in cluster.nodes:
        extra = list(node.extra)
        extra[extra.index("--cluster-node-timeout") + 1] = str(node_timeout_ms)
        if not full_coverage:
            extra += ["--cluster-require-full-coverage", "no"]
        node.extra = tuple(extra)
    return cluster.start()


def admin(node: RedisServer) -> aioredis.Redis:
    return aioredis.Redis(port=node.port, socket_timeout=2, socket_connect_timeout=2)


async def slot_owners(node: RedisServer) -> dict[int, int]:
    """Slot -> port of its master, from ``CLUSTER SLOTS``."""
    async with admin(node) as client:
        ranges = await client.execute_command("CLUSTER", "SLOTS")
    owners = {}
    for start, end, master, *_ in ranges:
        for slot in range(int(start), int(end) + 1):
            owners[slot] = int(master[1])
    return owners


async def rooms_per_shard(cluster: RedisCluster, per_shard: int) -> dict[int, list[str]]:
    """``per_shard`` rooms on each master (port -> rooms), each in a slot of its
    own: the slot is ``CLUSTER KEYSLOT`` of the room's key form ``{prefix}:{room}``."""
    owners = await slot_owners(cluster.nodes[0])
    chosen: dict[int, list[str]] = {node.port: [] for node in cluster.nodes}
    slots: set[int] = set()
    async with admin(cluster.nodes[0]) as client:
        for n in itertools.count():
            if all(len(rooms) >= per_shard for rooms in chosen.values()):
                return chosen
            room = f"room{n}"
            slot = int(await client.execute_command("CLUSTER", "KEYSLOT", f"{PREFIX}:{{{room}}}"))
            port = owners[slot]
            if slot not in slots and len(chosen[port]) < per_shard:
                slots.add(slot)
                chosen[port].append(room)
    raise AssertionError("unreachable")


async def cluster_ok(nodes: list[RedisServer]) -> bool:
    for node in nodes:
        try:
            async with admin(node) as client:
                info = (await client.execute_command("CLUSTER", "INFO")).decode()
        except (aioredis.RedisError, OSError):
            return False
        if "cluster_state:ok" not in info:
            return False
    return True


async def migrate_slot(cluster: RedisCluster, slot: int, source: int, target: int) -> list[bytes]:
    """Move ``slot`` from node ``source`` to node ``target`` by hand, as
    ``redis-cli --cluster reshard`` does; returns the keys moved."""
    src, tgt = cluster.nodes[source], cluster.nodes[target]
    others = [n for i, n in enumerate(cluster.nodes) if i not in (source, target)]
    async with admin(src) as s, admin(tgt) as t:
        src_id = (await s.execute_command("CLUSTER", "MYID")).decode()
        tgt_id = (await t.execute_command("CLUSTER", "MYID")).decode()
        await t.execute_command("CLUSTER", "SETSLOT", slot, "IMPORTING", src_id)
        await s.execute_command("CLUSTER", "SETSLOT", slot, "MIGRATING", tgt_id)
        moved: list[bytes] = []
        while keys := await s.execute_command("CLUSTER", "GETKEYSINSLOT", slot, 100):
            await s.execute_command("MIGRATE", "127.0.0.1", tgt.port, "", 0, 5000, "KEYS", *keys)
            moved += keys
        for node in [tgt, src, *others]:
            async with admin(node) as client:
                await client.execute_command("CLUSTER", "SETSLOT", slot, "NODE", tgt_id)
    return moved
