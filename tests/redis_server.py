"""A real redis-server on a free loopback port, for tests."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path

from .conftest import free_port


class RedisServer:
    """``redis-server --port P`` in its own folder; stop, restart empty, kill clients."""

    def __init__(self, folder: Path, port: int | None = None, *extra: str) -> None:
        self.folder = folder
        self.port = port or free_port()
        self.extra = extra
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
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
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.cli("PING") == "PONG":
                return self
            time.sleep(0.02)
        raise RuntimeError(f"redis-server on port {self.port} did not start")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(5)
        self.process = None

    def cli(self, *args: str) -> str:
        """Run one command with redis-cli; its output (empty on failure)."""
        result = subprocess.run(
            ["redis-cli", "-p", str(self.port), *args],
            capture_output=True,
            text=True,
            timeout=10,
        )
        return result.stdout.strip()


def redis_available() -> bool:
    return shutil.which("redis-server") is not None and shutil.which("redis-cli") is not None


def port_open(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def free_cluster_port() -> int:
    """A free port whose cluster bus port (+10000) is free too."""
    while True:
        port = free_port()
        if port < 55535 and not port_open(port + 10000):
            return port


class RedisCluster:
    """Three redis-server nodes with --cluster-enabled, joined by redis-cli --cluster create."""

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
        return self.nodes[0].url

    def start(self) -> RedisCluster:
        for node in self.nodes:
            node.start()
        addresses = [f"127.0.0.1:{node.port}" for node in self.nodes]
        subprocess.run(
            [
                "redis-cli",
                "--cluster",
                "create",
                *addresses,
                "--cluster-replicas",
                "0",
                "--cluster-yes",
            ],
            check=True,
            capture_output=True,
            timeout=30,
        )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if all("cluster_state:ok" in n.cli("CLUSTER", "INFO") for n in self.nodes):
                return self
            time.sleep(0.1)
        raise RuntimeError("redis cluster did not become ready")

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()

    def node_of(self, key: str) -> int:
        """Index of the node that owns ``key``'s slot."""
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
