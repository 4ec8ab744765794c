"""The failover drill on Redis Sentinel (issue 16): one master, its replica and three
sentinels (roomcast.testing.redis_sentinel); two roomcast processes given only
``ROOMCAST_REDIS_SENTINELS`` and the service name; a publisher per room and a
subscriber per room on each process (drill.py's clients, monitor and checks).
The master is SIGKILLed mid-stream, the sentinels promote its replica, roomcast
follows; then the old master starts again (empty) and the sentinels make it a
replica of the new one. Run with ``pytest -m cluster tests/cluster``."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from roomcast.testing import redis_available
from roomcast.testing.redis_sentinel import RedisSentinels

from ..conftest import ServerProcess, require
from .clients import Publisher, Watcher
from .drill import SETTINGS, Drill, ServerFactory

pytestmark = [pytest.mark.cluster, pytest.mark.e2e, pytest.mark.timeout(150)]

ROOMS = 6
FOLLOW = 3.0
"""Seconds after the replica's promotion by which roomcast must have followed it."""


@pytest.fixture
def sentinels(tmp_path: Path) -> Iterator[RedisSentinels]:
    require(redis_available(), "redis-server (apt-get install redis-server)")
    with RedisSentinels(tmp_path / "redis", sentinels=3) as redis:
        yield redis


class SentinelDrill(Drill):
    """drill.py's Drill (clients, /readyz monitor, checks, report) on a master
    with a replica and sentinels instead of a cluster: the checks used here read
    only the clients, the servers and the marks, never the cluster."""

    def __init__(self, redis: RedisSentinels, servers: dict[str, ServerProcess]) -> None:
        super().__init__(None, servers)
        self.redis = redis

    @classmethod
    async def begin(cls, redis: RedisSentinels, server_factory: ServerFactory) -> SentinelDrill:
        settings = {k: v for k, v in SETTINGS.items() if k != "redis_cluster"}
        settings.update(redis_sentinels=redis.addresses, redis_sentinel_service=redis.service)
        a, b = await asyncio.gather(
            asyncio.to_thread(server_factory, **settings),
            asyncio.to_thread(server_factory, **settings),
        )
        drill = cls(redis, {"A": a, "B": b})
        for k in range(ROOMS):
            room, pub = f"room{k}", "AB"[k % 2]
            drill.publishers.append(Publisher(room, pub, drill.servers[pub].ws))
            for name, server in drill.servers.items():
                drill.watchers.append(Watcher(room, name, server.ws))
        for watcher in drill.watchers:
            with contextlib.suppress(TimeoutError):
                await watcher.subscribe()
        drill._tasks += [asyncio.create_task(w.keep_subscribed()) for w in drill.watchers]
        drill._tasks.append(asyncio.create_task(drill._monitor()))
        for publisher in drill.publishers:
            publisher.start()
        drill.mark("start")
        return drill

    def kill_master(self) -> None:
        self.mark("kill")
        self.redis.master.stop()

    async def wait_promoted(self, timeout: float = 30) -> list[str]:
        """Wait until the sentinels name the replica as the master (mark
        ``promoted``); the problems: none, or that they did not."""
        try:
            async with asyncio.timeout(timeout):
                while await asyncio.to_thread(self.redis.master_port) != self.redis.replica.port:
                    await asyncio.sleep(0.1)
        except TimeoutError:
            return [f"the sentinels did not promote the replica within {timeout:g} s"]
        self.mark("promoted")
        return []

    async def restart_old_master(self, timeout: float = 30) -> list[str]:
        """Start the old master again (empty) and wait until the sentinels made it a
        replica of the new one with its link up (mark ``rejoined``)."""
        self.mark("restart")
        await asyncio.to_thread(self.redis.master.start)
        return await self.wait_rejoined(timeout)

    async def wait_rejoined(self, timeout: float = 30) -> list[str]:
        """Wait until the old master is a replica with its link up (mark
        ``rejoined``); the problems: none, or that it is not."""
        old = self.redis.master
        try:
            async with asyncio.timeout(timeout):
                while "master_link_status:up" not in await asyncio.to_thread(
                    old.cli, "INFO", "replication"
                ):
                    await asyncio.sleep(0.1)
        except TimeoutError:
            return [
                f"the old master is not a synced replica within {timeout:g} s",
                *await asyncio.to_thread(self.sentinel_view),
            ]
        self.mark("rejoined")
        return []

    def sentinel_view(self) -> list[str]:
        """What the old master says of its role, and each sentinel's last log lines
        (``+convert-to-slave``, ``+tilt``...): why a rejoin did not happen."""
        role = self.redis.master.cli("ROLE").splitlines()
        out = [f"old master ROLE: {' '.join(role) or 'no answer'}"]
        for k, sentinel in enumerate(self.redis.sentinels):
            out += [f"sentinel{k}: {line}" for line in sentinel.log_tail(12)]
        return out

    def readyz_after(self, since: str) -> list[str]:
        """Both processes answer /readyz 200 from mark ``since`` on."""
        out = [
            f"{self.t(t)} {name}: {status} {body[:160]}"
            for t, name, status, body in self.readyz
            if t >= self.marks[since] and status != 200
        ]
        for name in self.servers:  # a monitor that never looked proves nothing
            if sum(1 for t, n, *_ in self.readyz if n == name and t >= self.marks[since]) < 3:
                out.append(f"{name}: /readyz sampled fewer than 3 times after {since}")
        return out


async def test_a_killed_master_is_followed_to_the_replica_the_sentinels_promote(
    sentinels: RedisSentinels, server_factory: ServerFactory, tmp_path: Path
) -> None:
    """SIGKILL the master mid-stream: every publish is answered in time, failures
    are ``unavailable``; the sentinels promote the replica, and from ``FOLLOW``
    seconds after that every room flows on both processes and /readyz is 200;
    each acknowledged message is received once or covered by a signal
    (docs/redis.md, "The guarantee, exactly", point 3); then the old master starts
    again, empty, and becomes a replica: roomcast does not go back to it, nothing
    stops flowing. No log storm, no traceback."""
    drill = await SentinelDrill.begin(sentinels, server_factory)
    try:
        await asyncio.sleep(2)
        drill.kill_master()
        promoted = await drill.wait_promoted()
        await asyncio.sleep(FOLLOW)
        drill.mark("flowing")
        await asyncio.sleep(2)
        rejoined = await drill.restart_old_master()
        await asyncio.sleep(3)
        await drill.finish()
        problems = drill.checks(**{
            "the sentinels promote the replica": promoted,
            "the old master rejoins as a replica": rejoined,
            f"every room flows from {FOLLOW:g} s after the promotion on, through the "
            "old master's return": drill.not_flowing("flowing"),
            "/readyz 200 on both processes from then on": drill.readyz_after("flowing"),
            "every subscriber receives after the old master rejoined": (
                drill.received_after("rejoined") if "rejoined" in drill.marks else []
            ),
        })  # fmt: skip
    finally:
        await drill.close()
    drill.verdict(problems, tmp_path)


async def test_a_failover_of_a_live_master_is_followed_and_nothing_is_lost_silently(
    sentinels: RedisSentinels, server_factory: ServerFactory, tmp_path: Path
) -> None:
    """``SENTINEL FAILOVER`` mid-stream: the old master stays up and takes writes
    until the sentinels demote it (what it acknowledged after the promotion is not
    on the new master: docs/redis.md, "The guarantee, exactly", point 3). roomcast
    follows ``+switch-master``: from ``FOLLOW`` seconds after the promotion every
    room flows on both processes, and each acknowledged message is received once
    or covered by a signal; every publish is answered in time."""
    drill = await SentinelDrill.begin(sentinels, server_factory)
    try:
        await asyncio.sleep(2)
        drill.mark("failover")
        answer = await asyncio.to_thread(sentinels.failover)
        promoted = await drill.wait_promoted()
        await asyncio.sleep(FOLLOW)
        drill.mark("flowing")
        rejoined = await drill.wait_rejoined()
        await asyncio.sleep(2)
        await drill.finish()
        problems = drill.checks(**{
            "the sentinels fail the master over": [] if answer == "OK" else [repr(answer)],
            "the sentinels promote the replica": promoted,
            "the old master becomes a replica": rejoined,
            f"every room flows from {FOLLOW:g} s after the promotion on": drill.not_flowing(
                "flowing"
            ),
            "/readyz 200 on both processes from then on": drill.readyz_after("flowing"),
        })  # fmt: skip
    finally:
        await drill.close()
    drill.verdict(problems, tmp_path)
