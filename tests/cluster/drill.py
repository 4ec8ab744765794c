"""Fault drills on a real Redis Cluster (issue 16): clients, pumps, a monitor, the
bookkeeping of every publish, and the checks a drill ends with.

A drill runs two ``roomcast serve`` processes (A and B) in cluster mode on a
three-master local cluster, with rooms chosen so that each master owns several
(each in a slot of its own). Every room has one publisher (on A or B) and one
subscriber on each process, so each process's pub/sub link to a master carries
several slots. They subscribe one after another: subscribes that arrive together
are a finding of their own (test_drills.py). Nothing is timed for speed: the
only clocks are deadlines (a publish answered within ``redis_timeout`` plus
slack counts as answered) and the marks that split a drill into phases.
The cluster's helpers are in topology.py, the log checks in logs.py.

The checks do not stop at the first failure: each returns every broken promise
with its numbers, and :meth:`Drill.report` puts them together with a summary of
the phases, so one run says how a drill fails.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import re
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import httpx

from roomcast.testing import RedisCluster, RedisServer

from ..conftest import ServerProcess
from .clients import DEADLINE, REDIS_TIMEOUT, Publisher, Sent, Watcher
from .logs import LOG_LINE_LIMIT, log_storms, parse_log
from .topology import PREFIX, cluster_ok, replica_synced, rooms_per_shard, serves_slots

ServerFactory = Callable[..., ServerProcess]

SETTINGS: dict[str, object] = {
    "redis_cluster": "true",
    "redis_prefix": PREFIX,
    "redis_timeout": REDIS_TIMEOUT,
    "redis_ping_interval": 1,
    "redis_backoff_cap": 1,
    "log_format": "json",
    "log_level": "warning",
}


# -- the drill ------------------------------------------------------------------------


CLOSE_WAIT = 10.0
"""Seconds :meth:`Drill.close` waits for the drill's tasks to end once cancelled."""


class Drill:
    """Two servers, publishers and watchers on rooms of every shard, a monitor of
    /readyz and of the cluster's state; phases named by :meth:`mark`.

    ``cluster`` is None for a drill on another Redis (test_sentinel.py's, which
    sets up its own rooms and clients): :meth:`checks`, :meth:`not_flowing`,
    :meth:`received_after` and the report read only the clients, the servers and
    the marks; the helpers that act on the cluster or its shards (:meth:`start`,
    :meth:`rooms_on`, :meth:`kill`, :meth:`wait_promoted`, :meth:`live_shard_failures`,
    :meth:`rate_kept`, ...) need one (:attr:`redis_cluster`)."""

    def __init__(self, cluster: RedisCluster | None, servers: dict[str, ServerProcess]) -> None:
        self.cluster = cluster
        self.servers = servers
        self.rooms: dict[int, list[str]] = {}  # master port -> rooms (now: see promoted)
        self.promoted: dict[int, int] = {}  # port of a failed master -> its replica's
        self.publishers: list[Publisher] = []
        self.watchers: list[Watcher] = []
        self.marks: dict[str, float] = {}
        self.readyz: list[tuple[float, str, int, str]] = []  # t, server, status, body
        self.states: list[tuple[float, bool]] = []  # t, every live node says ok
        self.down: set[int] = set()  # ports of nodes the drill killed
        self._tasks: list[asyncio.Task[None]] = []
        self._closing = False

    @classmethod
    async def start(
        cls, cluster: RedisCluster, server_factory: ServerFactory, per_shard: int = 3
    ) -> Drill:
        settings = {**SETTINGS, "redis_url": cluster.url}
        a, b = await asyncio.gather(
            asyncio.to_thread(server_factory, **settings),
            asyncio.to_thread(server_factory, **settings),
        )
        drill = cls(cluster, {"A": a, "B": b})
        drill.rooms = await rooms_per_shard(cluster, per_shard)
        for k, room in enumerate(r for rooms in drill.rooms.values() for r in rooms):
            pub = "AB"[k % 2]
            drill.publishers.append(Publisher(room, pub, drill.servers[pub].ws))
            for name, server in drill.servers.items():
                drill.watchers.append(Watcher(room, name, server.ws))
        for watcher in drill.watchers:  # one at a time: test_concurrent_subscribes is apart
            with contextlib.suppress(TimeoutError):
                await watcher.subscribe()
        drill._tasks += [asyncio.create_task(w.keep_subscribed()) for w in drill.watchers]
        drill._tasks.append(asyncio.create_task(drill._monitor()))
        drill._tasks.append(asyncio.create_task(drill._watch_cluster_state()))
        for publisher in drill.publishers:
            publisher.start()
        drill.mark("start")
        return drill

    def mark(self, name: str) -> None:
        self.marks[name] = time.monotonic()

    @property
    def redis_cluster(self) -> RedisCluster:
        """The drill's cluster, for the helpers that need one."""
        if self.cluster is None:
            raise TypeError(f"{type(self).__name__} runs without a Redis Cluster")
        return self.cluster

    def rooms_on(self, node: int) -> list[str]:
        """The rooms of the slots master ``node`` (index in ``cluster.nodes``)
        served at the start, wherever they are served now."""
        port = self.redis_cluster.nodes[node].port
        while port not in self.rooms:
            port = self.promoted[port]
        return self.rooms[port]

    def live_nodes(self) -> list[RedisServer]:
        return [n for n in self.redis_cluster.all_nodes if n.port not in self.down]

    def kill(self, node: int) -> None:
        self.mark("kill")
        self.down.add(self.redis_cluster.nodes[node].port)
        self.redis_cluster.nodes[node].stop()

    async def restart(self, node: int) -> None:
        """Start the node again on its port with its nodes.conf (its data is gone)."""
        self.mark("restart")
        await asyncio.to_thread(self.redis_cluster.nodes[node].start)
        self.down.discard(self.redis_cluster.nodes[node].port)

    async def wait_cluster_ok(self, timeout: float = 20) -> None:
        async with asyncio.timeout(timeout):
            while not await cluster_ok(self.live_nodes()):
                await asyncio.sleep(0.1)
        self.mark("cluster_ok")

    async def wait_promoted(self, node: int, timeout: float = 20) -> list[str]:
        """Wait until the replica of the killed master ``node`` serves its slots
        and every live node reports ``cluster_state:ok``; its rooms are on the
        replica's port from then on (mark ``promoted``). The problems: none, or
        that it did not happen within ``timeout`` seconds."""
        old, replica = self.redis_cluster.nodes[node], self.redis_cluster.replica_nodes[node]
        try:
            async with asyncio.timeout(timeout):
                while not (await serves_slots(replica) and await cluster_ok(self.live_nodes())):
                    await asyncio.sleep(0.1)
        except TimeoutError:
            return [f"replica {replica.port} of {old.port} not promoted within {timeout:g} s"]
        self.mark("promoted")
        self.rooms[replica.port] = self.rooms.pop(old.port)
        self.promoted[old.port] = replica.port
        return []

    async def wait_rejoined(self, node: int, timeout: float = 20) -> list[str]:
        """Wait until node ``node``, started again after its replica took over,
        is a replica with its link up and every node reports ``cluster_state:ok``
        (mark ``rejoined``). The problems: none, or that it did not happen."""
        try:
            async with asyncio.timeout(timeout):
                while not (
                    await replica_synced(self.redis_cluster.nodes[node])
                    and await cluster_ok(self.live_nodes())
                ):
                    await asyncio.sleep(0.1)
        except TimeoutError:
            port = self.redis_cluster.nodes[node].port
            return [f"{port} not a synced replica within {timeout:g} s of its restart"]
        self.mark("rejoined")
        return []

    async def _monitor(self) -> None:
        async with httpx.AsyncClient(timeout=2) as http:
            while not self._closing:
                for name, server in self.servers.items():
                    try:
                        response = await http.get(f"{server.http}/readyz")
                        entry = (time.monotonic(), name, response.status_code, response.text)
                    except httpx.HTTPError as exc:
                        entry = (time.monotonic(), name, 0, repr(exc))
                    self.readyz.append(entry)
                await asyncio.sleep(0.25)

    async def _watch_cluster_state(self) -> None:
        """What the live masters say of the cluster, every 0.1 s, on its own task (a
        slow /readyz must not leave gaps here)."""
        while not self._closing:
            self.states.append((time.monotonic(), await cluster_ok(self.live_nodes())))
            await asyncio.sleep(0.1)

    async def finish(self) -> None:
        """Stop publishing, wait for late answers, give deliveries time to arrive."""
        self.mark("stop")
        await asyncio.gather(*(p.stop() for p in self.publishers))
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(3):
                while self._undelivered():
                    await asyncio.sleep(0.1)

    def acked(self, room: str) -> list[Sent]:
        return [s for p in self.publishers if p.room == room for s in p.sent if s.ok]

    def _undelivered(self) -> int:
        missing = 0
        for w in self.watchers:
            got = {(e, o) for e, o, _ in w.messages}
            for s in self.acked(w.room):
                missing += s.position not in got and not w.covered(s.position)
        return missing

    async def close(self) -> None:
        """Stop every task the drill started and wait for them, ``CLOSE_WAIT`` seconds
        at most. A task still running then would hang the test's event loop at its
        teardown (its cancel was lost): the drill fails naming it, with its stack."""
        self._closing = True
        tasks = list(self._tasks)
        for task in self._tasks:
            task.cancel()
        for publisher in self.publishers:
            publisher.stopping = True
            if publisher.task is not None:
                publisher.task.cancel()
                tasks.append(publisher.task)
        for watcher in self.watchers:
            watcher.stopped = True
            if watcher.client is not None:
                await watcher.client.close()
        _, pending = await asyncio.wait(tasks, timeout=CLOSE_WAIT) if tasks else (set(), set())
        if pending:
            stacks = "\n".join(f"{task!r}: {task.get_stack(limit=8)!r}" for task in pending)
            raise AssertionError(
                f"{len(pending)} drill task(s) still running {CLOSE_WAIT} s after their "
                f"cancel:\n{stacks}"
            )

    # -- checks ----------------------------------------------------------------------

    def t(self, when: float) -> str:
        return f"{when - self.marks['start']:+.1f}s"

    def unanswered(self) -> list[str]:
        """Every publish answered within its deadline."""
        out = []
        for p in self.publishers:
            late = [s for s in p.sent if s.late]
            if late:
                never = sum(s.answered is None for s in late)
                out.append(
                    f"{p.room}@{p.server}: {len(late)} of {len(p.sent)} publishes not answered "
                    f"within {DEADLINE}s ({never} never), first sent at {self.t(late[0].sent)}"
                )
        return out

    def bad_codes(self) -> list[str]:
        """Every failed publish failed with ``unavailable``."""
        codes = Counter(
            (p.room, p.server, s.code)
            for p in self.publishers
            for s in p.sent
            if s.ok is False and s.code != "unavailable"
        )
        return [
            f"{room}@{server}: {n} x error {code!r}" for (room, server, code), n in codes.items()
        ]

    def _cluster_failed_during(self, start: float, end: float) -> bool:
        """The live masters reported the cluster failed around ``start``..``end``, or
        nobody asked them then (a machine so loaded the state was not sampled: not
        counted against roomcast)."""
        window = [ok for t, ok in self.states if start - 0.5 <= t <= end + 0.5]
        return not window or not all(window)

    def live_shard_failures(self, dead: int) -> list[str]:
        """Rooms on live shards fail no publish while the live masters report
        ``cluster_state:ok`` (with full coverage required, Redis itself refuses
        every slot once the dead master is flagged FAIL: that is excused, whether
        the monitor saw the cluster failed then or Redis's answer says so,
        ``CLUSTERDOWN``, "the cluster is down": a loaded machine may sample too
        slowly to see a short failure)."""
        out = []
        dead_rooms = set(self.rooms_on(dead))
        for p in self.publishers:
            if p.room in dead_rooms:
                continue
            failed = [
                s
                for s in p.sent
                if (s.ok is not True or s.late)
                and "cluster is down" not in (s.message or "")
                and not self._cluster_failed_during(s.sent, s.answered or s.sent + DEADLINE)
            ]
            if failed:
                out.append(
                    f"{p.room}@{p.server} (live shard): {len(failed)} publishes failed or "
                    f"unanswered while the cluster served, first at {self.t(failed[0].sent)} "
                    f"({failed[0].code or 'no answer'}: {failed[0].message})"
                )
        return out

    def rate_kept(self, dead: int, ratio: float = 0.8) -> list[str]:
        """Rooms on live shards keep at least ``ratio`` of their pre-fault publish
        rate while the master is down (acks per second from mark ``start`` to
        ``kill``, against ``kill`` to ``restart``; both measured in this run, so
        a loaded machine slows both)."""
        out = []
        dead_rooms = set(self.rooms_on(dead))
        start, kill, restart = (self.marks[k] for k in ("start", "kill", "restart"))
        for p in self.publishers:
            if p.room in dead_rooms:
                continue
            before = sum(1 for s in p.sent if s.ok and start <= s.sent < kill) / (kill - start)
            during = sum(1 for s in p.sent if s.ok and kill <= s.sent < restart) / (restart - kill)
            if during < ratio * before:
                out.append(
                    f"{p.room}@{p.server} (live shard): {during:.1f} acks/s while the master "
                    f"was down, {before:.1f} before ({during / before if before else 0:.0%})"
                )
        return out

    def not_flowing(self, since: str) -> list[str]:
        """Every room publishes successfully from mark ``since`` on, and every
        subscriber receives some of those publishes."""
        out = []
        for p in self.publishers:
            after = [s for s in p.sent if s.sent >= self.marks[since]]
            good = [s for s in after if s.ok and not s.late]
            if not after or len(good) < len(after):
                out.append(
                    f"{p.room}@{p.server}: {len(good)} of {len(after)} publishes ok after {since}"
                )
        return out + self.received_after(since)

    def received_after(self, since: str) -> list[str]:
        """Every subscriber received publishes acknowledged after mark ``since``."""
        out = []
        for w in self.watchers:
            got = {(e, o) for e, o, _ in w.messages}
            acked = [s for s in self.acked(w.room) if s.sent >= self.marks[since]]
            if not any(s.position in got for s in acked):
                out.append(f"{w.room}@{w.server}: none of {len(acked)} acknowledged received")
        return out

    def substituted(self, w: Watcher) -> list[Sent]:
        """The acknowledged publishes of ``w``'s room whose position ``w`` received
        with another event's data: the position was given out twice (offsets
        reused by a promoted replica that lacked the first event). Such a publish
        was not received; like any other, it must be covered by a signal."""
        data = {(e, o): d for e, o, d in w.messages}
        return [s for s in self.acked(w.room) if data.get(s.position, s.n) != s.n]

    def accounting(self) -> list[str]:
        """Each acknowledged publish received by every subscriber of its room
        exactly once with its data, or covered by a signalled gap (``reset``, a
        resume not recovered). A position received with another event's data
        (:meth:`substituted`) is not its publish received: it too needs a signal."""
        out = []
        for w in self.watchers:
            got = Counter((e, o) for e, o, _ in w.messages)
            acked = self.acked(w.room)
            lost = [s for s in acked if not got[s.position] and not w.covered(s.position)]
            twice = [key for key, n in got.items() if n > 1]
            wrong = [s for s in self.substituted(w) if not w.covered(s.position)]
            if lost:
                out.append(
                    f"{w.room}@{w.server}: {len(lost)} of {len(acked)} acknowledged publishes "
                    f"never received and no signal (first sent {self.t(lost[0].sent)}, "
                    f"{lost[0].epoch}:{lost[0].offset}); signals: {w.signals[:3]}"
                )
            if twice:
                out.append(f"{w.room}@{w.server}: {len(twice)} positions received more than once")
            if wrong:
                out.append(
                    f"{w.room}@{w.server}: {len(wrong)} positions received with another "
                    f"event's data and no signal (first sent {self.t(wrong[0].sent)}, "
                    f"{wrong[0].epoch}:{wrong[0].offset}); signals: {w.signals[:3]}"
                )
        return out

    def refused_subscribes(self) -> list[str]:
        """Every subscribe (at the start, and resumes after a close) answered ok."""
        return [
            f"{w.room}@{w.server}: {len(w.refused)} subscribes refused ({dict(Counter(w.refused))})"
            + ("" if w.subscribed else ", never subscribed")
            for w in self.watchers
            if w.refused or not w.subscribed
        ]

    def log_storms(self, limit: int = LOG_LINE_LIMIT) -> list[str]:
        """No log line (digits aside) more than ``limit`` times in one second."""
        return [
            f"{name}: {storm}" for name, s in self.servers.items() for storm in log_storms(s, limit)
        ]

    def tracebacks(self) -> list[str]:
        """No error logged with a traceback (a bug, or a fault nothing handled)."""
        out = []
        for name, server in self.servers.items():
            seen = Counter(
                (line, exc.strip().splitlines()[-1])
                for _, line, exc in parse_log(server.log())
                if exc
            )
            for (line, last), n in seen.most_common():
                out.append(f"{name}: {n} x {line[:120]} -> {last[:160]}")
        return out

    def summary(self) -> str:
        """Phases, /readyz answers and acks per second by phase, signals, and how
        subscribers followed a promotion (:meth:`following`), for the report."""
        lines = ["marks: " + ", ".join(f"{k} {self.t(v)}" for k, v in self.marks.items())]
        for name in self.servers:
            runs: list[list[object]] = []  # [status, first t, last t, count]
            for t, server, status, _ in self.readyz:
                if server != name:
                    continue
                if runs and runs[-1][0] == status:
                    runs[-1][2:] = [self.t(t), int(str(runs[-1][3])) + 1]
                else:
                    runs.append([status, self.t(t), self.t(t), 1])
            text = ", ".join(f"{s} {a}..{b} (x{n})" for s, a, b, n in runs)
            lines.append(f"readyz {name}: {text}")
        bodies = {body for _, _, status, body in self.readyz if status != 200}
        lines += [f"  non-200 body: {body[:200]}" for body in list(bodies)[:2]]
        phases = sorted(self.marks, key=self.marks.__getitem__)
        for p in self.publishers:
            rates = []
            for a, b in itertools.pairwise(phases):
                span = self.marks[b] - self.marks[a]
                acks = sum(1 for s in p.sent if s.ok and self.marks[a] <= s.sent < self.marks[b])
                rates.append(f"{a}..{b} {acks / span:.0f}/s")
            errors = Counter(s.code or "none" for s in p.sent if not s.ok)
            lines.append(f"{p.room}@{p.server}: {', '.join(rates)}; failures {dict(errors)}")
        why = Counter(
            re.sub(r"\d+", "#", s.message or "no answer")[:100]
            for p in self.publishers
            for s in p.sent
            if not s.ok
        )
        if why:
            lines.append("failures by message (digits as #):")
            lines += [f"  {n} x {message}" for message, n in why.most_common(6)]
        for w in self.watchers:
            if w.signals or w.closes:
                line = f"{w.room}@{w.server} watcher: signals {w.signals[:3]} closes {w.closes}"
                if reused := len(self.substituted(w)):
                    line += f"; {reused} positions received with another event's data"
                lines.append(line)
        return "\n".join(lines + self.following())

    def following(self) -> list[str]:
        """After a promotion, per subscriber of the failed master's rooms: when it
        got its first event published after the kill (or signal), from the mark
        ``promoted``; and the acknowledged publishes it never received, covered by
        a signal (those sent after the kill went to the promoted master before
        this process followed it)."""
        if "promoted" not in self.marks or "kill" not in self.marks:
            return []
        kill, promoted = self.marks["kill"], self.marks["promoted"]
        followed = {r for port in self.promoted.values() for r in self.rooms.get(port, [])}
        lines = ["following the promotion (first event sent after the kill, from `promoted`; "
                 "acknowledged, not received, signalled: all / sent after the kill):"]  # fmt: skip
        for w in self.watchers:
            if followed and w.room not in followed:
                continue
            sent = {s.n: s.sent for p in self.publishers if p.room == w.room for s in p.sent}
            times = [t for (_, _, n), t in zip(w.messages, w.arrived, strict=True)
                     if sent.get(n, 0.0) > kill]  # fmt: skip
            first = min([*times, *(t for t in w.signalled if t > kill)], default=None)
            data = {(e, o): d for e, o, d in w.messages}
            covered = [s for s in self.acked(w.room) if data.get(s.position) != s.n]
            after = sum(s.sent >= kill for s in covered)
            when = "never" if first is None else f"{first - promoted:+.2f}s"
            lines.append(f"  {w.room}@{w.server}: {when}; {len(covered)} / {after}")
        return lines

    def checks(self, **specific: list[str]) -> dict[str, list[str]]:
        """What every drill checks, with the drill's own checks (name -> problems)
        first."""
        return {
            **specific,
            "every publish answered within redis_timeout + slack": self.unanswered(),
            "failures are `unavailable`": self.bad_codes(),
            "acknowledged = received once, or a signalled gap": self.accounting(),
            "no log line more than 20 times a second": self.log_storms(),
            "no traceback in the logs": self.tracebacks(),
            "every subscribe answered ok": self.refused_subscribes(),
        }

    def verdict(self, problems: dict[str, list[str]], folder: Path) -> None:
        """Write the report to ``folder``/report.txt; fail with it if a check failed."""
        report = self.report(problems)
        (folder / "report.txt").write_text(report)
        assert not any(problems.values()), report

    def report(self, problems: dict[str, list[str]]) -> str:
        failed = {k: v for k, v in problems.items() if v}
        text = [f"{len(failed)} of {len(problems)} checks failed"]
        for check, items in failed.items():
            text.append(f"== {check}")
            text += [f"  {item}" for item in items[:12]]
            if len(items) > 12:
                text.append(f"  ... {len(items) - 12} more")
        text.append("== summary")
        text.append(self.summary())
        return "\n".join(text)
