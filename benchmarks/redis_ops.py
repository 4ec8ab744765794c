"""What each roomcast operation costs Redis: commands, bytes, memory, and Redis's ceiling.

Usage (from the repository root; run by hand, it is no test)::

    .venv/bin/python benchmarks/redis_ops.py                    # single Redis, ~1 minute
    .venv/bin/python benchmarks/redis_ops.py --cluster          # a 3-master Redis Cluster
    .venv/bin/python benchmarks/redis_ops.py --ceiling          # + Redis's own ceiling rows
    .venv/bin/python benchmarks/redis_ops.py --ops 200 --payload-bytes 200 --json out.json

The figures feed the capacity model (benchmarks/capacity.py, docs/scaling.md).

What it does:

1. Starts a private ``redis-server`` (or, with ``--cluster``, three masters joined by
   ``redis-cli --cluster create``) pinned to ``--redis-cpus``, and two ``roomcast serve``
   processes of one worker each, *A* and *B*, on it (``ROOMCAST_REDIS_URL``, presence on,
   pinned to ``--server-cpus``). Their presence upkeep and pub/sub keep-alive ``PING`` are
   pushed out to an hour, so nothing but the operation measured reaches Redis.
2. Runs each operation ``--ops`` times through real WebSocket clients
   (roomcast.testing.connect), twice:

   * counting: ``CONFIG RESETSTAT`` on every master, the operations, then ``INFO
     commandstats`` and ``INFO stats``: commands Redis executed (those run inside a Lua
     script or a ``MULTI`` included), the microseconds Redis spent in the commands the
     workers sent (``usec`` of commandstats: command execution only, no socket I/O), and
     ``total_net_input_bytes`` / ``total_net_output_bytes``, less what an empty phase
     counts (the admin's own ``INFO``);
   * attributing: the same operations on fresh rooms under ``MONITOR``, to name the
     commands each worker sent (``EVALSHA`` named by its script, matched by SHA-1 to
     roomcast.hub.redis_scripts) and to tell them from the commands run inside scripts.
     Each worker's connections are told apart by their local ports (/proc).

   Pub/sub messages out per publish are the channel's subscribers (``PUBSUB NUMSUB``, or
   ``SHARDNUMSUB`` on a cluster): one per worker with a subscriber in the room. The bytes
   of one such message are the difference between a publish into a room one worker
   subscribes to and one into a room no worker subscribes to. Then the workers' own
   CPU per publish (``--cpu-publishes``, one at a time, from a client on A into a room
   whose one subscriber is on B: A's CPU is the publishing side, B's one message in and
   one delivery) and the size of an event frame.
3. Presence upkeep: two more workers with ``ROOMCAST_PRESENCE_REFRESH=1``; counts the
   ``MAINTAIN`` calls per room per worker per cycle, their bytes and the workers' CPU per
   call, with 1 member per room on one and on two workers, and 10 members on one.
4. Memory: Redis ``used_memory`` per room and per history entry (``--payload-bytes`` of
   data), and a fresh worker's RSS per connection and per subscription (``--mem-conns``
   connections, each subscribed to 10 rooms shared 10 to a room, then to one room of its
   own).
5. ``--ceiling``: Redis's own ceiling, without roomcast, on a Redis of its own.
   ``redis-benchmark -c 8 -P 16`` (pipelined like roomcast's batches, pinned to
   ``--client-cpus``) calls each script with a room's real arguments: PUBLISH while
   W = 0, 1, 4, 16, 64 raw connections subscribe to the room's channel (a worker each;
   one thread reads and discards what they get), MAINTAIN with 1 and 10 entries,
   RECOVER, PRESENCE_ADD, NOTICE, and a plain ``SET`` as the reference; each
   ``--ceiling-rounds`` times, interleaved, medians reported. Redis's CPU comes from
   /proc: each row gives calls/s and Redis CPU-µs per call (so calls per core-second,
   even when Redis did not saturate its core). Redis runs with
   ``client-output-buffer-limit pubsub 0 0 0`` so a reader that falls behind is not
   disconnected. (One room: redis-benchmark draws each ``__rand_int__`` on its own, and
   a script's keys must be one room's; a message per subscribed connection per publish
   costs Redis the same for one room or many.)

Prints one table per part; ``--json PATH`` writes every figure. The machine is shared:
each part is short, and the counts (not the timings) are what the model relies on.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import os
import re
import selectors
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis

from roomcast.bench.procfs import cpu_seconds, process_tree, tree_cpu_seconds, tree_rss_bytes
from roomcast.hub import redis_scripts
from roomcast.testing import ProtocolClient, RedisCluster, RedisServer, connect
from roomcast.testing.client import Connecting
from run import free_port, stop_group, wait_for_port

HOUR = "3600"
ADMIN = {"config|resetstat", "info", "monitor", "pubsub|numsub", "pubsub|shardnumsub"}
"""Commands of this script's own admin connection, left out of every count."""

SCRIPT_NAMES = {
    hashlib.sha1(getattr(redis_scripts, name).encode()).hexdigest(): name
    for name in redis_scripts.__all__
}


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# -- Redis: the nodes, their counters, MONITOR -------------------------------------------


class Nodes:
    """The masters under test, each with an admin connection of its own."""

    def __init__(self, ports: list[int], pids: list[int]) -> None:
        self.ports = ports
        self.pids = pids
        self.admin = [redis.Redis(port=p, decode_responses=True) for p in ports]

    def reset(self) -> None:
        for a in self.admin:
            a.config_resetstat()

    def snapshot(self) -> dict[str, Any]:
        """Commandstats (calls, usec) and net bytes summed over the masters."""
        calls: Counter[str] = Counter()
        usec: Counter[str] = Counter()
        net_in = net_out = 0
        for a in self.admin:
            for name, stat in a.info("commandstats").items():
                cmd = name.removeprefix("cmdstat_")
                if cmd not in ADMIN:
                    calls[cmd] += int(stat["calls"])
                    usec[cmd] += int(stat["usec"])
            stats = a.info("stats")
            net_in += int(stats["total_net_input_bytes"])
            net_out += int(stats["total_net_output_bytes"])
        return {"calls": calls, "usec": usec, "in": net_in, "out": net_out}

    def used_memory(self) -> int:
        return sum(int(a.info("memory")["used_memory"]) for a in self.admin)

    def subscribers(self, channel: str, sharded: bool) -> int:
        total = 0
        for a in self.admin:
            cmd = "SHARDNUMSUB" if sharded else "NUMSUB"
            reply = a.execute_command("PUBSUB", cmd, channel)  # type: ignore[no-untyped-call]
            total += int(reply[1])
        return total


_LINE = re.compile(r"^\+?\d+\.\d+ \[\d+ ([^\]]+)\] (.*)$")
_ARG = re.compile(r'"((?:[^"\\]|\\.)*)"')


class Monitor:
    """``MONITOR`` on every master while a block runs; :attr:`lines` are
    ``(source, command)``: source ``lua`` or a client's ``ip:port``, command
    ``evalsha:<SCRIPT>`` for a known script."""

    def __init__(self, ports: list[int]) -> None:
        self.ports = ports
        self.lines: list[tuple[str, str]] = []
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def _read(self, port: int, ready: threading.Event) -> None:
        with socket.create_connection(("127.0.0.1", port)) as s:
            s.sendall(b"MONITOR\r\n")
            s.settimeout(0.1)
            buf = b""
            while not buf.startswith(b"+OK\r\n"):
                buf += s.recv(65536)
            buf = buf[5:]
            ready.set()
            while not self._stop.is_set():
                try:
                    chunk = s.recv(1 << 20)
                except TimeoutError:
                    continue
                if not chunk:
                    break
                buf += chunk
                *whole, buf = buf.split(b"\r\n")
                for raw in whole:
                    self._parse(raw.decode("utf-8", "replace"))

    def _parse(self, line: str) -> None:
        m = _LINE.match(line)
        if m is None:
            return
        source, rest = m.groups()
        args = _ARG.findall(rest)
        if not args:
            return
        cmd = args[0].lower()
        if cmd in ("evalsha", "evalsha_ro") and len(args) > 1:
            cmd = "evalsha:" + SCRIPT_NAMES.get(args[1], args[1][:8])
        elif cmd in ("pubsub", "config", "client", "cluster", "script") and len(args) > 1:
            cmd = f"{cmd}|{args[1].lower()}"
        if cmd.split(":")[0] not in ADMIN and cmd != "info":
            self.lines.append((source, cmd))

    @contextlib.contextmanager
    def running(self) -> Iterator[Monitor]:
        for port in self.ports:
            ready = threading.Event()
            t = threading.Thread(target=self._read, args=(port, ready), daemon=True)
            t.start()
            ready.wait(5)
            self._threads.append(t)
        try:
            yield self
        finally:
            time.sleep(0.3)  # what is still in flight
            self._stop.set()
            for t in self._threads:
                t.join(2)


def local_ports(pid: int) -> set[int]:
    """Local TCP ports of ``pid``'s sockets (its connections to Redis among them)."""
    inodes = set()
    with contextlib.suppress(OSError):
        for fd in os.listdir(f"/proc/{pid}/fd"):
            with contextlib.suppress(OSError):
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
                if target.startswith("socket:["):
                    inodes.add(target[8:-1])
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError), open(table) as f:
            next(f)
            for row in f:
                parts = row.split()
                if parts[9] in inodes:
                    ports.add(int(parts[1].rsplit(":", 1)[1], 16))
    return ports


# -- roomcast workers -----------------------------------------------------------------------


@dataclass
class Worker:
    name: str
    proc: subprocess.Popen[bytes]
    port: int

    @property
    def ws(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"


@contextlib.contextmanager
def workers(
    names: list[str], redis_url: str, tmp: Path, opts: argparse.Namespace, **settings: str
) -> Iterator[list[Worker]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ROOMCAST_")}
    env.update({
        "ROOMCAST_REDIS_URL": redis_url,
        "ROOMCAST_REDIS_CLUSTER": "true" if opts.cluster else "false",
        "ROOMCAST_PRESENCE": "true",
        "ROOMCAST_PRESENCE_REFRESH": HOUR,
        "ROOMCAST_PRESENCE_TTL": str(2 * int(HOUR)),
        "ROOMCAST_REDIS_PING_INTERVAL": HOUR,
        "ROOMCAST_PUBLISH_RATE": "0",
        "ROOMCAST_MAX_CONNECTIONS_PER_USER": "0",
        "ROOMCAST_OUTBOX_MAX_MESSAGES": "100000",
        "ROOMCAST_LOG_LEVEL": "warning",
    })  # fmt: skip
    env.update({f"ROOMCAST_{k.upper()}": v for k, v in settings.items()})
    started: list[Worker] = []
    try:
        for name in names:
            port = free_port()
            work = tmp / f"worker-{name}-{port}"
            work.mkdir()
            env["ROOMCAST_DATABASE_URL"] = f"sqlite+aiosqlite:///{work}/roomcast.db"
            command = [sys.executable, "-m", "roomcast", "serve", "--port", str(port)]
            if opts.server_cpus:
                command = ["taskset", "-c", opts.server_cpus, *command]
            with (work / "server.log").open("wb") as out:
                proc = subprocess.Popen(
                    command, env=env, cwd=work, stdout=out, stderr=subprocess.STDOUT,
                    start_new_session=True,
                )  # fmt: skip
            started.append(Worker(name, proc, port))
            try:
                wait_for_port(port, proc, "/readyz")
            except RuntimeError as exc:
                tail = (work / "server.log").read_text(errors="replace")[-2000:]
                raise RuntimeError(f"worker {name}: {exc}\n{tail}") from None
        time.sleep(0.5)  # control channel subscribed, start-up commands done
        yield started
    finally:
        for w in started:
            stop_group(w.proc)


def open_ws(url: str, name: str) -> Connecting:
    """A protocol client without client-side pings (a loaded machine must not make it
    close), with a generous reply timeout, and no limit on frames it has not read
    (websockets stops reading at 16 by default: pongs and close frames then wait)."""
    return connect(url, name=name, timeout=30, ping_interval=None, max_queue=None)


def data_of(size: int) -> dict[str, str]:
    """A JSON object whose compact encoding is ``size`` bytes (at least 12)."""
    return {"text": "x" * max(0, size - 11)}


async def drain(client: ProtocolClient, room: str, count: int) -> None:
    for _ in range(count):
        await client.next_event("message", room=room, timeout=10)


# -- operations -------------------------------------------------------------------------


@dataclass
class Phase:
    """One operation, measured ``n`` times: counts, bytes and who sent what."""

    name: str
    n: int
    calls: dict[str, float] = field(default_factory=dict)
    executed: float = 0.0
    usec: float = 0.0
    bytes_in: float = 0.0
    bytes_out: float = 0.0
    sent: dict[str, dict[str, float]] = field(default_factory=dict)
    pubsub_out: float | None = None
    note: str = ""


Op = Callable[[str, int], Awaitable[None]]
"""An operation: ``op(tag, i)`` does the i-th one on rooms named after ``tag``."""


class Bench:
    def __init__(self, nodes: Nodes, ws: list[Worker], opts: argparse.Namespace) -> None:
        self.nodes = nodes
        self.workers = {w.name: w for w in ws}
        self.opts = opts
        self.baseline = {"in": 0.0, "out": 0.0}
        self.phases: list[Phase] = []
        self.extra: dict[str, Any] = {}

    async def measure(
        self,
        name: str,
        setup: Callable[[str], Awaitable[Any]] | None,
        op: Op,
        n: int,
        note: str = "",
        pubsub_out: Callable[[str], float] | None = None,
    ) -> Phase:
        phase = Phase(name, n, note=note)
        # counting pass
        word = re.sub(r"[^a-z]", "", name.split()[0])
        tag = f"{word}-c{time.monotonic_ns()}"
        if setup:
            await setup(tag)
        await asyncio.sleep(0.3)
        self.nodes.reset()
        for i in range(n):
            await op(tag, i)
        await asyncio.sleep(0.5)
        snap = self.nodes.snapshot()
        if pubsub_out is not None:
            phase.pubsub_out = pubsub_out(tag)
        phase.calls = {k: v / n for k, v in sorted(snap["calls"].items())}
        phase.executed = sum(snap["calls"].values()) / n
        phase.bytes_in = (snap["in"] - self.baseline["in"]) / n
        phase.bytes_out = (snap["out"] - self.baseline["out"]) / n
        # attributing pass
        tag = f"{word}-m{time.monotonic_ns()}"
        if setup:
            await setup(tag)
        await asyncio.sleep(0.3)
        ports = {
            name: set().union(*(local_ports(pid) for pid in process_tree(w.proc.pid)))
            for name, w in self.workers.items()
        }
        with Monitor(self.nodes.ports).running() as mon:
            for i in range(n):
                await op(tag, i)
            await asyncio.sleep(0.5)
        sent: dict[str, Counter[str]] = {}
        top_level: set[str] = set()
        for source, cmd in mon.lines:
            if source == "lua":
                who = "inside scripts"
            else:
                port = int(source.rsplit(":", 1)[1])
                who = next((w for w, ps in ports.items() if port in ps), "other")
                top_level.add(cmd.split(":")[0])
            sent.setdefault(who, Counter())[cmd] += 1
        phase.sent = {w: {k: v / n for k, v in sorted(c.items())} for w, c in sorted(sent.items())}
        # Redis time in the commands the workers sent (a script's includes its commands)
        phase.usec = sum(v for k, v in snap["usec"].items() if k in top_level) / n
        self.phases.append(phase)
        log(f"  {name}: {phase.executed:.1f} commands, {phase.bytes_in:.0f} B in, "
            f"{phase.bytes_out:.0f} B out per op")  # fmt: skip
        return phase

    async def calibrate(self) -> None:
        self.nodes.reset()
        await asyncio.sleep(0.5)
        snap = self.nodes.snapshot()
        self.baseline = {"in": snap["in"], "out": snap["out"]}


async def operations(bench: Bench, opts: argparse.Namespace) -> None:
    a, b = bench.workers["A"], bench.workers["B"]
    n = opts.ops
    data = data_of(opts.payload_bytes)
    sharded = opts.cluster
    prefix = "rc"
    await bench.calibrate()

    def channel(room: str) -> str:
        return f"{prefix}:{{{room}}}:ch"

    clients: dict[str, list[ProtocolClient]] = {}

    async def open_clients(key: str, url: str, count: int) -> list[ProtocolClient]:
        opened = [await open_ws(url, name=f"{key}-{i}") for i in range(count)]
        clients[key] = opened
        return opened

    # connect: n connections with a connect frame
    async def op_connect(tag: str, i: int) -> None:
        clients.setdefault(tag, []).append(await open_ws(a.ws, name=f"{tag}-{i}"))

    await bench.measure("connect (handshake + connect frame)", None, op_connect, n)

    # subscribe, first subscriber of the room on this worker
    firsts: dict[str, list[ProtocolClient]] = {}

    async def setup_first(tag: str) -> None:
        firsts[tag] = await open_clients(tag + "-1", a.ws, n)

    async def op_first(tag: str, i: int) -> None:
        await firsts[tag][i].subscribe(f"{tag}.{i}")

    await bench.measure(
        "subscribe (first in room on this worker)", setup_first, op_first, n,
        note="presence on: PRESENCE_ADD + a join NOTICE included",
    )  # fmt: skip

    # subscribe, the room already has a subscriber on this worker
    seconds: dict[str, list[ProtocolClient]] = {}

    async def setup_second(tag: str) -> None:
        await setup_first(tag)
        for i, c in enumerate(firsts[tag]):
            await c.subscribe(f"{tag}.{i}")
        seconds[tag] = await open_clients(tag + "-2", a.ws, n)

    async def op_second(tag: str, i: int) -> None:
        await seconds[tag][i].subscribe(f"{tag}.{i}")

    await bench.measure(
        "subscribe (room already on this worker)", setup_second, op_second, n,
        note="presence on",
    )  # fmt: skip

    # resume: 10 events missed, room already on this worker
    resumers: dict[str, tuple[ProtocolClient, list[ProtocolClient], dict[str, Any]]] = {}

    async def setup_resume(tag: str) -> None:
        pub = await open_ws(a.ws, name=f"{tag}-pub")
        await pub.subscribe(tag)
        first = await pub.publish(tag, data)
        for _ in range(10):
            await pub.publish(tag, data)
        subs = await open_clients(tag + "-r", a.ws, n)
        resumers[tag] = (pub, subs, first)

    async def op_resume(tag: str, i: int) -> None:
        _, subs, first = resumers[tag]
        result = await subs[i].subscribe(tag, since=first)
        assert result["recovered"], result

    await bench.measure(
        "resume, 10 missed (room already on this worker)", setup_resume, op_resume, n,
        note="presence on",
    )  # fmt: skip

    # resume: 10 events missed, the first subscriber of the room on this worker
    starts: dict[str, tuple[list[ProtocolClient], list[dict[str, Any]]]] = {}

    async def setup_resume_first(tag: str) -> None:
        pub = await open_ws(b.ws, name=f"{tag}-pub")
        firsts_at = []
        for i in range(n):
            firsts_at.append(await pub.publish(f"{tag}.{i}", data))
            for _ in range(10):
                await pub.publish(f"{tag}.{i}", data)
        starts[tag] = (await open_clients(tag + "-r", a.ws, n), firsts_at)

    async def op_resume_first(tag: str, i: int) -> None:
        subs, at = starts[tag]
        result = await subs[i].subscribe(f"{tag}.{i}", since=at[i])
        assert result["recovered"], result

    await bench.measure(
        "resume, 10 missed (first in room on this worker)", setup_resume_first,
        op_resume_first, n, note="presence on",
    )  # fmt: skip

    # publish: rooms subscribed on no worker, on one, on two
    pubs: dict[str, ProtocolClient] = {}
    watchers: dict[str, list[ProtocolClient]] = {}

    def setup_publish(on: list[Worker]) -> Callable[[str], Awaitable[None]]:
        async def setup(tag: str) -> None:
            pubs[tag] = await open_ws(a.ws, name=f"{tag}-pub")
            watchers[tag] = []
            for w in on:
                c = await open_ws(w.ws, name=f"{tag}-{w.name}")
                await c.subscribe(tag)
                watchers[tag].append(c)

        return setup

    async def op_publish(tag: str, i: int) -> None:
        await pubs[tag].publish(tag, data)
        if i == n - 1:
            for c in watchers[tag]:
                await drain(c, tag, n)

    def numsub(tag: str) -> float:
        return float(bench.nodes.subscribers(channel(tag), sharded))

    size = opts.payload_bytes
    p0 = await bench.measure(
        "publish (room on no worker)", setup_publish([]), op_publish, n,
        note=f"{size} B of data", pubsub_out=numsub,
    )  # fmt: skip
    p1 = await bench.measure(
        "publish (room on 1 worker)", setup_publish([a]), op_publish, n,
        note=f"{size} B of data", pubsub_out=numsub,
    )  # fmt: skip
    p2 = await bench.measure(
        "publish (room on 2 workers)", setup_publish([a, b]), op_publish, n,
        note=f"{size} B of data", pubsub_out=numsub,
    )  # fmt: skip
    per_message = (p1.bytes_out - p0.bytes_out, p2.bytes_out - p1.bytes_out)
    bench.extra["pubsub_message_bytes"] = per_message
    bench.extra["publish_reply_bytes"] = p0.bytes_out

    # history and presence reads
    readers: dict[str, ProtocolClient] = {}

    async def setup_reader(tag: str) -> None:
        readers[tag] = await open_ws(a.ws, name=f"{tag}-reader")
        await readers[tag].subscribe(tag)
        for _ in range(20):
            await readers[tag].publish(tag, data)

    async def op_history(tag: str, i: int) -> None:
        await readers[tag].history(tag, limit=50)

    async def op_presence(tag: str, i: int) -> None:
        await readers[tag].presence(tag)

    await bench.measure("history (limit 50, 20 events)", setup_reader, op_history, n)
    await bench.measure("presence list", setup_reader, op_presence, n)

    # unsubscribe: another local subscriber remains; the last local subscriber
    pairs: dict[str, tuple[list[ProtocolClient], list[ProtocolClient]]] = {}

    async def setup_pairs(tag: str) -> None:
        one = await open_clients(tag + "-x", a.ws, n)
        two = await open_clients(tag + "-y", a.ws, n)
        for i in range(n):
            await one[i].subscribe(f"{tag}.{i}")
            await two[i].subscribe(f"{tag}.{i}")
        pairs[tag] = (one, two)

    async def op_unsub_more(tag: str, i: int) -> None:
        await pairs[tag][1][i].unsubscribe(f"{tag}.{i}")

    async def op_unsub_last(tag: str, i: int) -> None:
        await pairs[tag][1][i].unsubscribe(f"{tag}.{i}")
        await pairs[tag][0][i].unsubscribe(f"{tag}.{i}")

    await bench.measure(
        "unsubscribe (others remain on this worker)", setup_pairs, op_unsub_more, n,
        note="presence on: presence remove + a leave NOTICE",
    )  # fmt: skip
    p_both = await bench.measure("unsubscribe x2 (the 2nd is the last)", setup_pairs,
                                 op_unsub_last, n)  # fmt: skip
    p_both.note = "both subscribers of a room leave: the second one unsubscribes the channel"

    async def setup_closers(tag: str) -> None:
        one = await open_clients(tag + "-z", a.ws, n)
        for i in range(n):
            await one[i].subscribe(f"{tag}.{i}")
        pairs[tag] = (one, [])

    async def op_close(tag: str, i: int) -> None:
        await pairs[tag][0][i].close()

    await bench.measure(
        "disconnect (1 room, the last on this worker)", setup_closers, op_close, n,
        note="presence on",
    )  # fmt: skip
    for group in clients.values():
        for c in group:
            with contextlib.suppress(Exception):
                await c.close()
    bench.extra.update(await worker_cpu(a, b, opts))


async def worker_cpu(a: Worker, b: Worker, opts: argparse.Namespace) -> dict[str, float]:
    """The workers' own CPU per publish: ``--cpu-publishes`` publishes, one at a time,
    from a client on A into a room whose one subscriber is on B. A's CPU per publish
    is the publishing side (frame in, the script call, the reply); B's is one pub/sub
    message received (read, decoded, gated, encoded once) and one delivery. Also the
    size of one event frame as the subscriber receives it."""
    data = data_of(opts.payload_bytes)
    room = f"cpu-{time.monotonic_ns()}"
    pub = await open_ws(a.ws, name="cpu-pub")
    sub = await open_ws(b.ws, name="cpu-sub")
    await sub.subscribe(room)
    for _ in range(50):  # warm-up
        await pub.publish(room, data)
    await drain(sub, room, 50)
    await asyncio.sleep(0.5)
    n = opts.cpu_publishes
    cpu_a, cpu_b = tree_cpu_seconds(a.proc.pid) or 0.0, tree_cpu_seconds(b.proc.pid) or 0.0
    for _ in range(n):
        await pub.publish(room, data)
    await drain(sub, room, n - 1)
    event = await sub.next_event("message", room=room, timeout=10)
    used_a = (tree_cpu_seconds(a.proc.pid) or 0.0) - cpu_a
    used_b = (tree_cpu_seconds(b.proc.pid) or 0.0) - cpu_b
    await pub.close()
    await sub.close()
    frame = json.dumps(event, separators=(",", ":"))
    out = {
        "worker_cpu_us_per_publish_sent": used_a / n * 1e6,
        "worker_cpu_us_per_message_received": used_b / n * 1e6,
        "event_frame_bytes": float(len(frame.encode())),
    }
    log(f"  worker CPU: {out['worker_cpu_us_per_publish_sent']:.0f} µs per publish sent, "
        f"{out['worker_cpu_us_per_message_received']:.0f} µs per message received "
        f"(+1 delivery); event frame {len(frame)} B")  # fmt: skip
    return out


# -- presence upkeep ---------------------------------------------------------------------


async def upkeep(nodes: Nodes, ws: list[Worker], opts: argparse.Namespace) -> list[dict[str, Any]]:
    """MAINTAIN per room per worker per refresh, its bytes and Redis time, and the
    workers' own CPU per call: ``--upkeep-rooms`` rooms of 1 member on one worker,
    then on two; then a tenth as many rooms of 10 members on one worker."""
    a, b = ws
    seconds = opts.upkeep_seconds
    rows = []
    opened: list[ProtocolClient] = []

    async def join(worker: Worker, rooms: int, members: int, prefix: str) -> None:
        for r in range(rooms):
            for m in range(members):
                c = await open_ws(worker.ws, name=f"u-{worker.name}-{prefix}-{r}-{m}")
                await c.subscribe(f"{prefix}.{r}")
                c.events.clear()
                opened.append(c)

    async def count(label: str, rooms: int, on_workers: int, members: int) -> None:
        await asyncio.sleep(1.5)
        nodes.reset()
        cpu0 = sum(tree_cpu_seconds(w.proc.pid) or 0.0 for w in ws)
        start = time.monotonic()
        await asyncio.sleep(seconds)
        snap = nodes.snapshot()
        cpu = sum(tree_cpu_seconds(w.proc.pid) or 0.0 for w in ws) - cpu0
        elapsed = time.monotonic() - start
        calls = max(1, snap["calls"].get("evalsha", 0))
        # one refresh every presence_refresh (1 s) plus the time the upkeep itself takes
        per = calls / (rooms * on_workers * elapsed)
        row = {
            "case": label,
            "rooms": rooms,
            "workers": on_workers,
            "members_per_room_per_worker": members,
            "maintain_per_room_per_worker_per_s": per,
            "commands_per_maintain": sum(snap["calls"].values()) / calls,
            "bytes_in_per_maintain": snap["in"] / calls,
            "bytes_out_per_maintain": snap["out"] / calls,
            "redis_usec_per_maintain": snap["usec"].get("evalsha", 0) / calls,
            "worker_cpu_us_per_maintain": cpu / calls * 1e6,
        }
        rows.append(row)
        log(f"  upkeep {label}: {per:.2f} MAINTAIN per room per worker per s, "
            f"{row['bytes_in_per_maintain']:.0f} B in, worker "
            f"{row['worker_cpu_us_per_maintain']:.0f} µs each")  # fmt: skip

    rooms = opts.upkeep_rooms
    await join(a, rooms, 1, "up1")
    await count(f"{rooms} rooms of 1 member, 1 worker", rooms, 1, 1)
    await join(b, rooms, 1, "up1")
    await count(f"{rooms} rooms, 1 member on each of 2 workers", rooms, 2, 1)
    for c in opened:
        with contextlib.suppress(Exception):
            await c.close()
    opened.clear()
    await join(a, rooms // 10, 10, "up10")
    await count(f"{rooms // 10} rooms of 10 members, 1 worker", rooms // 10, 1, 10)
    for c in opened:
        with contextlib.suppress(Exception):
            await c.close()
    return rows


# -- memory --------------------------------------------------------------------------------


async def memory(nodes: Nodes, w: Worker, opts: argparse.Namespace) -> dict[str, Any]:
    """Redis bytes per room and per history entry; worker RSS per connection and
    per subscription."""
    out: dict[str, Any] = {}
    data = data_of(opts.payload_bytes)
    # Redis: rooms with one event, then history entries in one room
    pub = await open_ws(w.ws, name="mem-pub")
    rooms = 1000
    before = nodes.used_memory()
    for i in range(rooms):
        await pub.publish(f"mem.{i}", data)
    out["redis_bytes_per_room_1_event"] = (nodes.used_memory() - before) / rooms
    entries = 500  # under the default history_size (1000): none trimmed
    before = nodes.used_memory()
    for _ in range(entries):
        await pub.publish("mem.big", data)
    out["redis_bytes_per_history_entry"] = (nodes.used_memory() - before) / entries
    await pub.close()
    # worker RSS
    n = opts.mem_conns
    await asyncio.sleep(1)
    rss0 = tree_rss_bytes(w.proc.pid) or 0
    conns = [await open_ws(w.ws, name=f"m-{i}") for i in range(n)]
    await asyncio.sleep(1)
    rss1 = tree_rss_bytes(w.proc.pid) or 0
    for i, c in enumerate(conns):
        for k in range(10):
            await c.subscribe(f"m.{(i // 10 + k * (n // 10)) % n}")
        c.events.clear()
    await asyncio.sleep(1)
    rss2 = tree_rss_bytes(w.proc.pid) or 0
    for i, c in enumerate(conns):
        await c.subscribe(f"own.{i}")
        c.events.clear()
    await asyncio.sleep(1)
    rss3 = tree_rss_bytes(w.proc.pid) or 0
    out.update({
        "connections": n,
        "worker_rss_per_connection": (rss1 - rss0) / n,
        "worker_rss_per_subscription_shared_rooms": (rss2 - rss1) / (10 * n),
        "worker_rss_per_room_of_one": (rss3 - rss2) / n,
    })  # fmt: skip
    for c in conns:
        await c.close()
    return out


# -- Redis's ceiling -----------------------------------------------------------------------


class Readers:
    """W raw connections subscribed to ``channels``, read and discarded by one thread."""

    def __init__(self, port: int, count: int, channels: list[str]) -> None:
        self.socks = []
        self.bytes = 0
        self._stop = threading.Event()
        for _ in range(count):
            s = socket.create_connection(("127.0.0.1", port))
            parts = ["SUBSCRIBE", *channels]
            cmd = f"*{len(parts)}\r\n" + "".join(f"${len(p)}\r\n{p}\r\n" for p in parts)
            s.sendall(cmd.encode())
            s.setblocking(False)
            self.socks.append(s)
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        sel = selectors.DefaultSelector()
        for s in self.socks:
            sel.register(s, selectors.EVENT_READ)
        while not self._stop.is_set():
            for key, _ in sel.select(0.1):
                with contextlib.suppress(BlockingIOError):
                    self.bytes += len(key.fileobj.recv(1 << 22))  # type: ignore[union-attr]

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        for s in self.socks:
            s.close()


@dataclass
class Case:
    """One ``redis-benchmark`` command, with W subscribed connections reading."""

    label: str
    args: list[str]
    ops: int
    subscribers: int = 0


def ceiling_cases(shas: dict[str, str], payload: str, n: int) -> list[Case]:
    """The rows of the ceiling table. Every script call is on one room: redis-benchmark
    draws each ``__rand_int__`` on its own, and a script's keys must be one room's.
    W connections subscribed to a room's channel cost Redis the same whether they
    read one room or many (a message per publish each)."""
    room = ["rc:{r}:meta", "rc:{r}:log"]
    presence = ["rc:{r}:pres", "rc:{r}:pexp"]
    entry = '{"conn":"c%d","user":"user-%d","joined":1764000000.123456}'
    entries = [x for i in range(10) for x in (f"c{i}", entry % (i, i))]
    cases = [Case("SET (reference)", ["-r", "100000", "SET", "key:__rand_int__", "x" * 100], n)]
    for w in (0, 1, 4, 16, 64):
        args = ["EVALSHA", shas["PUBLISH"], "2", *room, "e1", payload, "1000", "3600",
                "rc:{r}:ch", "PUBLISH"]  # fmt: skip
        cases.append(Case(f"PUBLISH, {w} subscribed workers", args, n // max(1, w // 4), w))
    maintain = ["EVALSHA", shas["MAINTAIN"], "4", *room, *presence, "30", "3600"]
    cases += [
        Case("MAINTAIN, 1 entry", [*maintain, *entries[:2]], n),
        Case("MAINTAIN, 10 entries", [*maintain, *entries], n // 2),
        Case("RECOVER (a subscribe without since)",
             ["EVALSHA", shas["RECOVER"], "2", *room, "e1", "3600", "", "0", "", ""], n),
        Case("PRESENCE_ADD", ["EVALSHA", shas["PRESENCE_ADD"], "2", *presence, "30", "3600",
                              "c0", entry % (0, 0)], n),
        Case("NOTICE, 0 subscribed workers",
             ["EVALSHA", shas["NOTICE"], "1", room[0], "PUBLISH", "rc:{r}:ch",
              '!{"type":"join","room":"r","user":"user-1","conn":"c1"}'], n),
    ]  # fmt: skip
    return cases


def ceiling(tmp: Path, opts: argparse.Namespace) -> list[dict[str, Any]]:
    """Each case ``--ceiling-rounds`` times, interleaved; the median of each."""
    extra = ("--client-output-buffer-limit", "pubsub 0 0 0")
    server = RedisServer(tmp / "ceiling", None, *extra).start()
    trials: dict[str, list[dict[str, Any]]] = {}
    try:
        assert server.process is not None
        pid = server.process.pid
        _pin([pid], opts.redis_cpus)
        admin = redis.Redis(port=server.port, decode_responses=True)
        shas = {
            name: admin.script_load(getattr(redis_scripts, name)) for name in SCRIPT_NAMES.values()
        }
        payload = "1764000000.123456 5 abcde" + json.dumps(data_of(opts.payload_bytes))
        taskset = ["taskset", "-c", opts.client_cpus] if opts.client_cpus else []

        def run(case: Case) -> dict[str, Any]:
            readers = (
                Readers(server.port, case.subscribers, ["rc:{r}:ch"]) if case.subscribers else None
            )
            time.sleep(0.3)
            admin.config_resetstat()
            cpu0 = cpu_seconds(pid) or 0.0
            t0 = time.monotonic()
            cmd = [*taskset, "redis-benchmark", "-p", str(server.port), "-c", "8", "-P", "16",
                   "-n", str(case.ops), "--csv", *case.args]  # fmt: skip
            done = subprocess.run(cmd, capture_output=True, text=True, check=False)
            elapsed = time.monotonic() - t0
            cpu = (cpu_seconds(pid) or 0.0) - cpu0
            time.sleep(0.3)
            if readers:
                readers.close()
            stats = admin.info("stats")
            failed = sum(int(c["failed_calls"]) for c in admin.info("commandstats").values())
            if failed or "error" in done.stdout.lower():
                raise RuntimeError(f"{case.label}: {failed} failed calls; {done.stdout[-500:]}")
            return {
                "ops_per_s": _csv_rps(done.stdout),
                "redis_cpu": cpu / elapsed,
                "redis_cpu_us_per_op": cpu / case.ops * 1e6,
                "bytes_in_per_op": int(stats["total_net_input_bytes"]) / case.ops,
                "bytes_out_per_op": int(stats["total_net_output_bytes"]) / case.ops,
            }

        cases = ceiling_cases(shas, payload, opts.ceiling_ops)
        for r in range(opts.ceiling_rounds):
            for case in cases[r % len(cases) :] + cases[: r % len(cases)]:
                trial = run(case)
                trials.setdefault(case.label, []).append(trial)
                us = trial["redis_cpu_us_per_op"]
                log(f"  ceiling {case.label}: {trial['ops_per_s']:,.0f}/s, "
                    f"Redis {trial['redis_cpu']:.2f} core, {us:.2f} µs/op")  # fmt: skip
    finally:
        server.stop()
    rows = []
    for case in cases:
        runs = trials[case.label]
        row: dict[str, Any] = {"case": case.label, "subscribers": case.subscribers, "ops": case.ops}
        for key in runs[0]:
            row[key] = statistics.median(t[key] for t in runs)
        cpu = [t["redis_cpu_us_per_op"] for t in runs]
        row["redis_cpu_us_per_op_range"] = (min(cpu), max(cpu))
        rows.append(row)
    return rows


def _csv_rps(text: str) -> float:
    """requests/s from ``redis-benchmark --csv``: a row is the test's name (the command
    line, whose quotes and commas are not escaped) and seven numbers, rps first."""
    for line in text.splitlines():
        fields = line.strip().rsplit('","', 7)
        if len(fields) == 8:
            with contextlib.suppress(ValueError):
                return float(fields[1])
    return 0.0


# -- output --------------------------------------------------------------------------------


def table(phases: list[Phase]) -> str:
    lines = [
        "| operation | commands executed / op | Redis µs / op | bytes in / op | "
        "bytes out / op | pub/sub msgs out | sent by the workers, per op |",
        "|---|---|---|---|---|---|---|",
    ]
    for p in phases:
        sent = "; ".join(
            f"{who}: " + ", ".join(f"{cmd} {v:g}" for cmd, v in cmds.items())
            for who, cmds in p.sent.items()
            if who != "inside scripts"
        )
        out = "" if p.pubsub_out is None else f"{p.pubsub_out:g}"
        lines.append(
            f"| {p.name} | {p.executed:.1f} | {p.usec:.1f} | {p.bytes_in:.0f} | "
            f"{p.bytes_out:.0f} | {out} | {sent or '-'} |"
        )
    return "\n".join(lines)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--cluster", action="store_true", help="a 3-master Redis Cluster")
    p.add_argument("--ops", type=int, default=100, help="operations per phase (100)")
    p.add_argument("--payload-bytes", type=int, default=200, help="JSON data per publish (200)")
    p.add_argument("--cpu-publishes", type=int, default=2000, help="for the workers' CPU")
    p.add_argument("--upkeep-rooms", type=int, default=200)
    p.add_argument("--upkeep-seconds", type=float, default=5.0)
    p.add_argument("--mem-conns", type=int, default=1000, help="connections for worker RSS")
    p.add_argument("--ceiling", action="store_true", help="also measure Redis's ceiling")
    p.add_argument("--ceiling-ops", type=int, default=100_000, help="calls per case (100000)")
    p.add_argument("--ceiling-rounds", type=int, default=3, help="interleaved rounds (3)")
    p.add_argument("--server-cpus", default="0", help="taskset list for the workers ('')")
    p.add_argument("--redis-cpus", default="1", help="CPUs for redis-server ('')")
    p.add_argument("--client-cpus", default="0", help="CPUs for redis-benchmark ('')")
    p.add_argument("--skip", default="", help="parts to skip: ops,upkeep,memory")
    p.add_argument("--json", type=Path)
    opts = p.parse_args()
    # SIGTERM (timeout, kill) unwinds like Ctrl-C: the workers and Redis are stopped
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    skip = set(filter(None, opts.skip.split(",")))
    result: dict[str, Any] = {"options": {k: str(v) for k, v in vars(opts).items()}}
    with tempfile.TemporaryDirectory(prefix="roomcast-redis-ops-") as tmp_name:
        tmp = Path(tmp_name)
        with _redis(tmp, opts) as (url, nodes):
            if "ops" not in skip:
                log("operations (workers A and B)")
                with workers(["A", "B"], url, tmp, opts) as ws:
                    bench = Bench(nodes, ws, opts)
                    asyncio.run(operations(bench, opts))
                    result["operations"] = [vars(ph) for ph in bench.phases]
                    result.update(bench.extra)
                    print("\n## Redis per operation\n")
                    print(table(bench.phases))
                    a, b = bench.extra["pubsub_message_bytes"]
                    for key in (
                        "worker_cpu_us_per_publish_sent",
                        "worker_cpu_us_per_message_received",
                        "event_frame_bytes",
                    ):
                        print(f"\n{key}: {bench.extra[key]:.0f}", end="")
                    print()
                    print(f"\nbytes out of Redis per pub/sub message to a worker: {a:.0f} "
                          f"(1st worker), {b:.0f} (2nd); the publish reply: "
                          f"{bench.extra['publish_reply_bytes']:.0f}")  # fmt: skip
            if "upkeep" not in skip:
                log("presence upkeep (refresh 1 s)")
                with workers(["A2", "B2"], url, tmp, opts, presence_refresh="1",
                             presence_ttl="30") as ws:  # fmt: skip
                    rows = asyncio.run(upkeep(nodes, ws, opts))
                result["upkeep"] = rows
                print("\n## Presence upkeep (MAINTAIN)\n")
                print(
                    "| case | MAINTAIN / room / worker / s (refresh 1 s) | commands / call | "
                    "bytes in | bytes out | Redis µs (commandstats) | worker CPU µs |"
                )
                print("|---|---|---|---|---|---|---|")
                for r in rows:
                    cells = [
                        r["case"],
                        f"{r['maintain_per_room_per_worker_per_s']:.2f}",
                        f"{r['commands_per_maintain']:.1f}",
                        f"{r['bytes_in_per_maintain']:.0f}",
                        f"{r['bytes_out_per_maintain']:.0f}",
                        f"{r['redis_usec_per_maintain']:.1f}",
                        f"{r['worker_cpu_us_per_maintain']:.0f}",
                    ]
                    print("| " + " | ".join(cells) + " |")
            if "memory" not in skip:
                log("memory (a fresh worker)")
                with workers(["M"], url, tmp, opts) as ws:
                    mem = asyncio.run(memory(nodes, ws[0], opts))
                result["memory"] = mem
                print("\n## Memory\n")
                for k, v in mem.items():
                    print(f"- {k}: {v:,.0f}")
        if opts.ceiling:
            log("Redis's ceiling (redis-benchmark)")
            rows = ceiling(tmp, opts)
            result["ceiling"] = rows
            print("\n## Redis's ceiling (redis-benchmark -c 8 -P 16, no roomcast; medians)\n")
            print("| case | calls/s | Redis CPU (cores) | Redis CPU µs / call (min-max) | "
                  "calls per Redis core-second | bytes in / call | bytes out / call |")  # fmt: skip
            print("|---|---|---|---|---|---|---|")
            for r in rows:
                lo, hi = r["redis_cpu_us_per_op_range"]
                us = r["redis_cpu_us_per_op"]
                print(f"| {r['case']} | {r['ops_per_s']:,.0f} | {r['redis_cpu']:.2f} | "
                      f"{us:.1f} ({lo:.1f}-{hi:.1f}) | {1e6 / us:,.0f} | "
                      f"{r['bytes_in_per_op']:.0f} | {r['bytes_out_per_op']:.0f} |")  # fmt: skip
    if opts.json:
        opts.json.write_text(json.dumps(result, indent=1, default=str) + "\n")
    return 0


@contextlib.contextmanager
def _redis(tmp: Path, opts: argparse.Namespace) -> Iterator[tuple[str, Nodes]]:
    if opts.cluster:
        cluster = RedisCluster(tmp / "cluster").start()
        try:
            pids = [n.process.pid for n in cluster.nodes if n.process is not None]
            _pin(pids, opts.redis_cpus)
            yield cluster.url, Nodes([n.port for n in cluster.nodes], pids)
        finally:
            cluster.stop()
    else:
        server = RedisServer(tmp / "redis").start()
        try:
            assert server.process is not None
            _pin([server.process.pid], opts.redis_cpus)
            yield server.url, Nodes([server.port], [server.process.pid])
        finally:
            server.stop()


def _pin(pids: list[int], cpus: str) -> None:
    if cpus:
        for pid in pids:
            os.sched_setaffinity(pid, {int(c) for c in cpus.split(",")})


if __name__ == "__main__":
    raise SystemExit(main())
