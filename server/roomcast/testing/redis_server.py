"""A real ``redis-server`` (or a three-node Redis Cluster) on free loopback ports.

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
            [
                "redis-server",
                "--port", str(self.port),
                "--bind", "127.0.0.1",
                "--save", "",
                "--appendonly", "no",
                "--dir", str(self.folder),
                *self.extra,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                break
            if self.cli("PING") == "PONG":
                return self
            time.sleep(0.02)
        self.stop()
        raise RuntimeError(f"redis-server on port {self.port} did not start")

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
    """Three ``redis-server --cluster-enabled yes`` nodes joined by
    ``redis-cli --cluster create`` (no replicas), each in a folder under ``folder``.

    :meth:`start` returns once every node reports ``cluster_state:ok``; the
    caller must call :meth:`stop` (or use ``with``). For roomcast:
    ``Settings(redis_url=cluster.url, redis_cluster=True)``.
    """

    def __init__(self, folder: Path) -> None:
        self.nodes = [
            RedisServer(
                folder / f"node{i}",
                port,
                "--cluster-enabled", "yes",
                "--cluster-config-file", str(folder / f"node{i}" / "nodes.conf"),
                "--cluster-node-timeout", "5000",
            )
            for i, port in enumerate(free_cluster_port() for _ in range(3))
        ]  # fmt: skip

    @property
    def url(self) -> str:
        """The first node's URL: a cluster client discovers the others from it."""
        return self.nodes[0].url

    def start(self) -> RedisCluster:
        """Start the nodes, create the cluster, wait until it is ready (at most 20 s)."""
        try:
            for node in self.nodes:
                node.start()
            addresses = [f"127.0.0.1:{node.port}" for node in self.nodes]
            subprocess.run(
                ["redis-cli", "--cluster", "create", *addresses,
                 "--cluster-replicas", "0", "--cluster-yes"],
                check=True,
                capture_output=True,
                timeout=30,
            )  # fmt: skip
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                if all("cluster_state:ok" in n.cli("CLUSTER", "INFO") for n in self.nodes):
                    return self
                time.sleep(0.1)
            raise RuntimeError("redis cluster did not become ready")
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Kill every node."""
        for node in self.nodes:
            node.stop()

    def node_of(self, key: str) -> int:
        """Index in :attr:`nodes` of the node that owns ``key``'s slot."""
        slot = int(self.nodes[0].cli("CLUSTER", "KEYSLOT", key))
        for i, node in enumerate(self.nodes):
            if self._owns(node, slot):
                return i
        raise RuntimeError(f"no node owns slot {slot}")

    @staticmethod
    def _owns(node: RedisServer, slot: int) -> bool:
        myself = next(
            line for line in node.cli("CLUSTER", "NODES").splitlines() if "myself" in line
        )
        for part in myself.split()[8:]:
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
