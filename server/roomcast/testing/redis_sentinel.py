"""Redis Sentinel on free loopback ports: a master, its replica and one or three
sentinels watching it (TESTING.md's recipe), for roomcast's
``ROOMCAST_REDIS_SENTINELS``.

Needs ``redis-server`` and ``redis-cli`` (:func:`~roomcast.testing.redis_available`);
nothing is installed here::

    with RedisSentinels(tmp_path) as redis:
        settings = Settings(redis_sentinels=redis.addresses, redis_sentinel_service=redis.service)
        ...
        redis.master.stop()  # a crash: the sentinels promote the replica in a few seconds
"""

from __future__ import annotations

import time
from pathlib import Path
from types import TracebackType

from .redis_server import RedisServer

__all__ = ["RedisSentinel", "RedisSentinels"]


TIMERS = {"info-period": 1000, "publish-period": 500, "tilt-trigger": 5000, "tilt-period": 5000}
"""``SENTINEL DEBUG`` timers (Redis 7.0+; defaults 10000, 2000, 2000 and 30000 ms).

- A sentinel learns a server's role from its ``INFO``, asked every info-period:
  1 s here, not 10.
- A sentinel makes a demoted master a replica of the new one only after it has
  reported the wrong role for 4 publish periods: 2 s here, not 8.
- A sentinel whose timer runs more than tilt-trigger late (a loaded test machine)
  acts on nothing for tilt-period: here after a 5 s stall, for 5 s; by default
  after a 2 s stall, for 30 s, longer than a drill waits for the old master to
  rejoin (one CI run waited 30 s in vain; the log, :meth:`RedisSentinel.log_tail`,
  now says why when it happens).
"""


class RedisSentinel(RedisServer):
    """``redis-server sentinel.conf --sentinel`` on a free port, monitoring the
    master on ``master_port`` as ``service`` with quorum 1, a master down after
    ``down_after_ms`` and ``failover_timeout_ms`` (TESTING.md's recipe). Its
    configuration file is written in ``folder`` at each :meth:`start` (Sentinel
    rewrites it as it learns of replicas and other sentinels)."""

    def __init__(
        self,
        folder: Path,
        master_port: int,
        service: str = "mymaster",
        *,
        down_after_ms: int = 1000,
        failover_timeout_ms: int = 3000,
    ) -> None:
        super().__init__(folder)
        self.master_port = master_port
        self.service = service
        self.down_after_ms = down_after_ms
        self.failover_timeout_ms = failover_timeout_ms

    def _command(self) -> list[str]:
        conf = self.folder / "sentinel.conf"
        name = self.service
        conf.write_text(
            f"port {self.port}\nbind 127.0.0.1\ndir {self.folder}\n"
            f"sentinel monitor {name} 127.0.0.1 {self.master_port} 1\n"
            f"sentinel down-after-milliseconds {name} {self.down_after_ms}\n"
            f"sentinel failover-timeout {name} {self.failover_timeout_ms}\n"
            f"logfile {self.log}\n"
        )
        return ["redis-server", str(conf), "--sentinel"]

    @property
    def log(self) -> Path:
        """The sentinel's log file (kept across restarts, in :attr:`folder`)."""
        return self.folder / "sentinel.log"

    def start(self) -> RedisSentinel:
        """Start it, then shorten its timers with ``SENTINEL DEBUG`` (:data:`TIMERS`)."""
        super().start()
        self.cli("SENTINEL", "DEBUG", *(str(part) for item in TIMERS.items() for part in item))
        return self

    def log_tail(self, lines: int = 20) -> list[str]:
        """The last ``lines`` lines of :attr:`log` (none if there is no log yet)."""
        try:
            return self.log.read_text(errors="replace").splitlines()[-lines:]
        except FileNotFoundError:
            return []

    def info(self) -> dict[str, str]:
        """``SENTINEL MASTER <service>`` as a dict (empty when it does not answer)."""
        lines = self.cli("SENTINEL", "MASTER", self.service).splitlines()
        return dict(zip(lines[::2], lines[1::2], strict=False))

    def replica_promotable(self, port: int) -> bool:
        """Whether this sentinel could promote the replica on ``port`` now: it is
        connected to it, has its ``INFO`` (a run id) and sees its link to the master
        up. A replica only just discovered is listed ``slave,disconnected`` and a
        failover then answers ``NOGOODSLAVE``."""
        lines = self.cli("SENTINEL", "REPLICAS", self.service).splitlines()
        fields = dict(zip(lines[::2], lines[1::2], strict=False))
        return (
            fields.get("port") == str(port)
            and fields.get("flags") == "slave"
            and bool(fields.get("runid"))
            and fields.get("master-link-status") == "ok"
        )


class RedisSentinels:
    """A master, one replica of it (``--replicaof``) and ``sentinels`` (1 or 3)
    :class:`RedisSentinel` watching it as ``service``, each in a folder under
    ``folder``.

    :attr:`master` and :attr:`replica` are the servers as created; their roles
    change after a failover (kill the master with :meth:`RedisServer.stop`, or
    :meth:`failover`): :meth:`master_port` asks the sentinels who is master now.
    :meth:`start` returns once the replica's link is up and every sentinel knows
    the replica and the other sentinels (so a failover can happen); the caller
    must call :meth:`stop` (or use ``with``). For roomcast:
    ``Settings(redis_sentinels=s.addresses, redis_sentinel_service=s.service)``.
    """

    def __init__(
        self,
        folder: Path,
        *,
        sentinels: int = 1,
        service: str = "mymaster",
        down_after_ms: int = 1000,
        failover_timeout_ms: int = 3000,
    ) -> None:
        sync = ("--repl-diskless-sync-delay", "0")  # a replica syncs at once, not after 5 s
        self.service = service
        self.master = RedisServer(folder / "master", None, *sync)
        port = str(self.master.port)
        self.replica = RedisServer(
            folder / "replica", None, "--replicaof", "127.0.0.1", port, *sync
        )
        self.sentinels = [
            RedisSentinel(
                folder / f"sentinel{i}",
                self.master.port,
                service,
                down_after_ms=down_after_ms,
                failover_timeout_ms=failover_timeout_ms,
            )
            for i in range(sentinels)
        ]

    @property
    def addresses(self) -> str:
        """``127.0.0.1:P1,127.0.0.1:P2,...``: ``ROOMCAST_REDIS_SENTINELS``."""
        return ",".join(f"127.0.0.1:{sentinel.port}" for sentinel in self.sentinels)

    def start(self) -> RedisSentinels:
        """Start them all; wait until a failover could happen (at most 20 s)."""
        try:
            self.master.start()
            self.replica.start()
            for sentinel in self.sentinels:
                sentinel.start()
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                if self._ready():
                    return self
                time.sleep(0.1)
            raise RuntimeError("redis sentinels did not become ready")
        except BaseException:
            self.stop()
            raise

    def _ready(self) -> bool:
        if "master_link_status:up" not in self.replica.cli("INFO", "replication"):
            return False
        others = str(len(self.sentinels) - 1)
        for sentinel in self.sentinels:
            if sentinel.info().get("num-other-sentinels") != others:
                return False
            if not sentinel.replica_promotable(self.replica.port):
                return False
        return True

    def master_port(self) -> int | None:
        """The master's port as the first sentinel that answers says; None if none."""
        for sentinel in [s for s in self.sentinels if s.process is not None]:
            reply = sentinel.cli("SENTINEL", "GET-MASTER-ADDR-BY-NAME", self.service).split()
            if len(reply) == 2 and reply[1].isdigit():
                return int(reply[1])
        return None

    def server(self, port: int) -> RedisServer:
        """:attr:`master` or :attr:`replica`, by port."""
        return self.master if port == self.master.port else self.replica

    def failover(self, timeout: float = 10.0) -> str:
        """``SENTINEL FAILOVER`` through the first running sentinel: the replica is
        promoted, the old master stays up and is made its replica; the sentinel's
        answer (``OK``). While the sentinel answers ``NOGOODSLAVE`` (it has not yet
        heard from the replica since the last role change) it is asked again, for
        at most ``timeout`` seconds."""
        running = [s for s in self.sentinels if s.process is not None]
        if not running:
            return ""
        deadline = time.monotonic() + timeout
        while True:
            answer = running[0].cli("SENTINEL", "FAILOVER", self.service)
            if not answer.startswith("NOGOODSLAVE") or time.monotonic() > deadline:
                return answer
            time.sleep(0.1)

    def stop(self) -> None:
        """Kill every process."""
        for server in [*self.sentinels, self.replica, self.master]:
            server.stop()

    def __enter__(self) -> RedisSentinels:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
