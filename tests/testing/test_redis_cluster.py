"""roomcast.testing's RedisCluster with a replica per master: who replicates whom,
and who is master after a failover."""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from roomcast.testing import RedisCluster, RedisServer, redis_available

from ..conftest import require

pytestmark = pytest.mark.timeout(90)


def until(condition: Callable[[], bool], what: str, timeout: float = 30) -> None:
    """Poll ``condition()`` until true; fail naming ``what`` after ``timeout`` s (a
    bound for a cluster that never gets there, not a measure of speed)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"not within {timeout:g} s: {what}")
        time.sleep(0.1)


def master_port(replica: RedisServer) -> int:
    info = dict(
        line.split(":", 1)
        for line in replica.cli("INFO", "replication").splitlines()
        if ":" in line
    )
    return int(info["master_port"])


def test_without_replicas_there_are_three_nodes_and_no_replica(tmp_path: Path) -> None:
    cluster = RedisCluster(tmp_path)
    assert (len(cluster.nodes), cluster.replica_nodes) == (3, [])
    assert cluster.all_nodes == cluster.nodes
    with pytest.raises(ValueError, match="0 or 1"):
        RedisCluster(tmp_path, replicas=2)


def test_a_killed_master_is_replaced_by_its_replica_and_comes_back_as_a_replica(
    tmp_path: Path,
) -> None:
    require(redis_available(), "redis-server (apt-get install redis-server)")
    cluster = RedisCluster(tmp_path, replicas=1)
    for node in cluster.all_nodes:
        extra = list(node.extra)
        extra[extra.index("--cluster-node-timeout") + 1] = "1000"
        node.extra = tuple(extra)
    with cluster:
        assert len({node.port for node in cluster.all_nodes}) == 6
        assert cluster.masters() == cluster.nodes
        assert [cluster.role(r) for r in cluster.replica_nodes] == ["slave"] * 3
        assert [master_port(r) for r in cluster.replica_nodes] == [n.port for n in cluster.nodes]
        key = next(k for k in (f"k{n}" for n in itertools.count()) if cluster.node_of(k) == 1)

        old, replica = cluster.nodes[1], cluster.replica_nodes[1]
        old.stop()
        until(lambda: replica in cluster.masters(), "the replica promoted")
        assert cluster.owner_of(key) is replica
        assert old not in cluster.masters()
        with pytest.raises(RuntimeError, match="served by replica"):
            cluster.node_of(key)

        old.start()
        until(lambda: cluster.role(old) == "slave", "the old master a replica")
        until(lambda: master_port(old) == replica.port, "the old master replicating")
        assert sorted(n.port for n in cluster.masters()) == sorted(
            [cluster.nodes[0].port, replica.port, cluster.nodes[2].port]
        )
