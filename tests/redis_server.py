"""A real redis-server (or cluster) on free loopback ports: now public in
roomcast.testing; re-exported here for the suite's existing imports."""

from __future__ import annotations

from roomcast.testing import (
    RedisCluster,
    RedisServer,
    free_cluster_port,
    free_port,
    port_open,
    redis_available,
)

__all__ = [
    "RedisCluster",
    "RedisServer",
    "free_cluster_port",
    "free_port",
    "port_open",
    "redis_available",
]
