"""The drills' Redis Cluster (drill.py): roomcast.testing's three masters (with
or without a replica each) with a node timeout of the drill's choosing, rooms
picked per shard, the cluster's state, and a slot moved by hand as
``redis-cli --cluster reshard`` does."""

from __future__ import annotations

import itertools
from pathlib import Path

import redis.asyncio as aioredis

from roomcast.testing import RedisCluster, RedisServer

PREFIX = "drill"
"""The drills' ``redis_prefix``: a room's keys are ``drill:{room}:...``."""


def start_cluster(
    folder: Path, *, node_timeout_ms: int, full_coverage: bool, replicas: int = 0
) -> RedisCluster:
    """roomcast.testing's three-master cluster (with ``replicas`` per master, 0 or
    1) with the drill's node timeout and, unless ``full_coverage``,
    ``cluster-require-full-coverage no``."""
    cluster = RedisCluster(folder, replicas=replicas)
    for node in cluster.all_nodes:
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
    own: the slot is ``CLUSTER KEYSLOT`` of the room's key form ``{prefix}:{room}``.
    The masters are the current ones (after a failover, the promoted replica)."""
    live = next(node for node in cluster.all_nodes if node.process is not None)
    owners = await slot_owners(live)
    masters = set(owners.values())
    chosen: dict[int, list[str]] = {n.port: [] for n in cluster.all_nodes if n.port in masters}
    slots: set[int] = set()
    async with admin(live) as client:
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


async def serves_slots(node: RedisServer) -> bool:
    """Whether ``node`` says of itself that it is a master serving slots
    (``CLUSTER NODES``): a promoted replica, once the failover is done."""
    try:
        async with admin(node) as client:
            text = (await client.execute_command("CLUSTER", "NODES")).decode()
    except (aioredis.RedisError, OSError):
        return False
    myself = next((line.split() for line in text.splitlines() if "myself" in line), [])
    return len(myself) > 8 and "master" in myself[2]


async def replica_synced(node: RedisServer) -> bool:
    """Whether ``node`` is a replica whose link to its master is up."""
    try:
        async with admin(node) as client:
            info = await client.info("replication")
    except (aioredis.RedisError, OSError):
        return False
    return info.get("role") == "slave" and info.get("master_link_status") == "up"


async def cut_replication(master: RedisServer) -> aioredis.Redis:
    """Cut ``master`` off from its replica, which falls behind from now on: the
    master asks a password of new connections (``CONFIG SET requirepass``, not
    saved: a restart forgets it) and drops its replicas' links, so the replica
    cannot reconnect; clients connected before keep being served. Returns a
    client (the caller closes it) that still gets in, to read the master's
    replication offset."""
    password = "cut-off"
    async with admin(master) as client:
        await client.execute_command("CONFIG", "SET", "requirepass", password)
        await client.execute_command("CLIENT", "KILL", "TYPE", "replica")
    return aioredis.Redis(
        port=master.port, password=password, socket_timeout=2, socket_connect_timeout=2
    )


async def repl_offset(client: aioredis.Redis) -> int:
    """How far a node's copy of the replication stream goes (``INFO
    replication``: a master's ``master_repl_offset``, a replica's
    ``slave_repl_offset``)."""
    info = await client.info("replication")
    return int(info.get("slave_repl_offset", info["master_repl_offset"]))


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
