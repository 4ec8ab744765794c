"""A real ``redis-server`` (or a three-master Redis Cluster, with or without a
replica per master) on free loopback ports.

Needs the ``redis-server`` and ``redis-cli`` binaries on ``PATH`` (Debian:
``apt-get install redis-server``; Redis 7). Nothing is downloaded or installed
here: check :func:`redis_available` first and skip (or fail, in CI) without them.

A host's fixture, one server for the whole test session::

    @pytest.fixture(scope="session")
    def redis(tmp_path_factory):
        if not redis_available():
            pytest.skip("redis-server is not installed")
        with RedisServer(tmp_path_factory.mktemp("redis")) as server:
            yield server

Tests that share one server keep apart by key prefix (roomcast's
``Settings(redis_url=server.url, redis_prefix="t1")``).
"""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path
from types import TracebackType

from .ports import free_port, port_open

__all__ = ["RedisCluster", "RedisServer", "free_cluster_port", "redis_available"]

START_TIMEOUT = 10.0


def redis_available() -> bool:
    """Whether ``redis-server`` and ``redis-cli`` are on ``PATH``."""
    return shutil.which("redis-server") is not None and shutil.which("redis-cli") is not None


class RedisServer:
    """``redis-server --port P`` in its own folder, without persistence.

    ``folder`` holds its working files (it is created if missing); ``port``
    defaults to a free one; ``extra`` arguments are appended to the command line
    (``"--cluster-enabled", "yes"``, ...). :meth:`start` returns once the server
    answers ``PING``. The caller must call :meth:`stop` (or use ``with``): the
    server is a child process and outlives a test that forgets it.
    :meth:`stop` kills it outright, which is also how a test simulates a crash;
    :meth:`start` again brings it back empty on the same port.
    """

    def __init__(self, folder: Path, port: int | None = None, *extra: str) -> None:
        self.folder = folder
        self.port = port or free_port()
        self.extra = extra
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """``redis://127.0.0.1:PORT/0``, for ``Settings(redis_url=...)``."""
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        """Start the server and wait until it answers ``PING`` (at most 10 s)."""
        if not redis_available():
            raise RuntimeError(
                "redis-server and redis-cli are not installed (apt-get install redis-server)"
            )
        self.folder.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(
            self._command(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                break
            if self.cli("PING") == "PONG":
                return self
            time.sleep(0.02)
        self.stop()
        raise RuntimeError(f"redis-server on port {self.port} did not start")

    def _command(self) -> list[str]:
        return [
            "redis-server",
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--save", "",
            "--appendonly", "no",
            "--dir", str(self.folder),
            *self.extra,
        ]  # fmt: skip

    def stop(self) -> None:
        """Kill the server (no shutdown save: nothing is persisted anyway)."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(5)
        self.process = None

    def cli(self, *args: str) -> str:
        """Run one command with ``redis-cli``; its output (empty on failure)."""
        result = subprocess.run(
            ["redis-cli", "-p", str(self.port), *args],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
        return result.stdout.strip()

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def free_cluster_port() -> int:
    """A free port whose cluster bus port (port + 10000) is free too."""
    while True:
        port = free_port()
        if port < 55535 and not port_open(port + 10000):
            return port


class RedisCluster:
    """Three masters (``redis-server --cluster-enabled yes``) joined by
    ``redis-cli --cluster create``, each node in a folder under ``folder``;
    with ``replicas=1``, six nodes and ``--cluster-replicas 1``: one replica per
    master.

    :attr:`nodes` are the three masters as created, in order (index ``i`` is
    the same node for the cluster's whole life, whatever its role becomes);
    :attr:`replica_nodes` the replicas, ``replica_nodes[i]`` replicating
    ``nodes[i]`` (empty without replicas); :attr:`all_nodes` both. Roles change
    after a failover: kill a master (:meth:`RedisServer.stop`) and, after
    ``--cluster-node-timeout`` (5000 ms here; lower it in each node's
    ``extra`` before :meth:`start`), its replica is promoted; started again,
    the old master comes back as a replica of the promoted one.
    :meth:`masters` and :meth:`role` tell who is what now.

    :meth:`start` returns once every node reports ``cluster_state:ok`` and
    every replica its link to its master up; the caller must call :meth:`stop`
    (or use ``with``). For roomcast:
    ``Settings(redis_url=cluster.url, redis_cluster=True)``.
    """

    def __init__(self, folder: Path, *, replicas: int = 0) -> None:
        if replicas not in (0, 1):
            raise ValueError(f"replicas must be 0 or 1, not {replicas!r}")
        ports: list[int] = []
        while len(ports) < 3 * (1 + replicas):
            port = free_cluster_port()
            if port not in ports and port + 10000 not in ports and port - 10000 not in ports:
                ports.append(port)
        servers = [
            RedisServer(
                folder / f"node{i}",
                port,
                "--cluster-enabled", "yes",
                "--cluster-config-file", str(folder / f"node{i}" / "nodes.conf"),
                "--cluster-node-timeout", "5000",
                "--repl-diskless-sync-delay", "0",  # a replica syncs at once, not after 5 s
            )
            for i, port in enumerate(ports)
        ]  # fmt: skip
        self.nodes = servers[:3]
        """The masters as created (their roles may change after a failover)."""
        self.replica_nodes = servers[3:]
        """The replicas as created, ``replica_nodes[i]`` of ``nodes[i]``."""

    @property
    def all_nodes(self) -> list[RedisServer]:
        """:attr:`nodes`, then :attr:`replica_nodes`."""
        return [*self.nodes, *self.replica_nodes]

    @property
    def url(self) -> str:
        """The first node's URL: a cluster client discovers the others from it."""
        return self.nodes[0].url

    def start(self) -> RedisCluster:
        """Start the nodes, create the cluster, wait until it is ready (at most 20 s)."""
        try:
            for node in self.all_nodes:
                node.start()
            addresses = [f"127.0.0.1:{node.port}" for node in self.all_nodes]
            subprocess.run(
                ["redis-cli", "--cluster", "create", *addresses,
                 "--cluster-replicas", "1" if self.replica_nodes else "0", "--cluster-yes"],
                check=True,
                capture_output=True,
                timeout=30,
            )  # fmt: skip
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                if self._ready():
                    self._pair_replicas()
                    return self
                time.sleep(0.1)
            raise RuntimeError("redis cluster did not become ready")
        except BaseException:
            self.stop()
            raise

    def _ready(self) -> bool:
        if not all("cluster_state:ok" in n.cli("CLUSTER", "INFO") for n in self.all_nodes):
            return False
        return all(
            "master_link_status:up" in n.cli("INFO", "replication") for n in self.replica_nodes
        )

    def _pair_replicas(self) -> None:
        """Order :attr:`replica_nodes` as their masters in :attr:`nodes`
        (``redis-cli`` takes the first three as masters but may pair the
        replicas with them in any order)."""
        if not self.replica_nodes:
            return
        ids = {self._myself(n).split()[0]: n for n in self.nodes}
        paired: dict[int, RedisServer] = {}
        for replica in self.replica_nodes:
            fields = self._myself(replica).split()
            master = ids.get(fields[3]) if len(fields) > 3 else None
            if master is None or "slave" not in fields[2]:
                raise RuntimeError(f"node {replica.port} does not replicate one of the masters")
            paired[self.nodes.index(master)] = replica
        if len(paired) != len(self.nodes):
            raise RuntimeError("redis-cli did not give each master one replica")
        self.replica_nodes = [paired[i] for i in range(len(self.nodes))]

    def stop(self) -> None:
        """Kill every node."""
        for node in self.all_nodes:
            node.stop()

    def role(self, node: RedisServer) -> str:
        """``"master"`` or ``"slave"`` as ``node`` says (``ROLE``); ``""`` when it
        does not answer."""
        return node.cli("ROLE").split("\n", 1)[0].strip()

    def masters(self) -> list[RedisServer]:
        """The running nodes that are masters serving slots now, as each says of
        itself (``CLUSTER NODES``): after a failover the promoted replica, not the
        dead master. (An old master started again may claim its old slots for a
        moment, until the others tell it of the failover and it turns replica.)"""
        out = []
        for node in self.all_nodes:
            if node.process is None:
                continue
            fields = self._myself(node).split()
            if len(fields) > 8 and "master" in fields[2]:
                out.append(node)
        return out

    def node_of(self, key: str) -> int:
        """Index in :attr:`nodes` of the node that owns ``key``'s slot (for
        clusters whose masters are still the ones created; else :meth:`owner_of`)."""
        owner = self.owner_of(key)
        if owner not in self.nodes:
            raise RuntimeError(f"the slot of {key!r} is served by replica {owner.port} now")
        return self.nodes.index(owner)

    def owner_of(self, key: str) -> RedisServer:
        """The running node that serves ``key``'s slot now."""
        live = [node for node in self.all_nodes if node.process is not None]
        slot = int(live[0].cli("CLUSTER", "KEYSLOT", key))
        for node in live:
            if self._owns(node, slot):
                return node
        raise RuntimeError(f"no node owns slot {slot}")

    @staticmethod
    def _myself(node: RedisServer) -> str:
        """``node``'s own line of ``CLUSTER NODES`` (empty when it does not answer)."""
        lines = node.cli("CLUSTER", "NODES").splitlines()
        return next((line for line in lines if "myself" in line), "")

    @classmethod
    def _owns(cls, node: RedisServer, slot: int) -> bool:
        for part in cls._myself(node).split()[8:]:
            low, _, high = part.partition("-")
            if low.isdigit() and int(low) <= slot <= int(high or low):
                return True
        return False

    def __enter__(self) -> RedisCluster:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
