"""Memory over time: churn a multi-worker roomcast on Redis and watch its resident memory.

Usage (from the repository root; run by hand, it is no test)::

    .venv/bin/python benchmarks/soak.py                       # 30 min churn + 10 min idle
    .venv/bin/python benchmarks/soak.py --minutes 5 --idle-minutes 2 --json soak.json

What it does:

1. starts a private ``redis-server`` on a free port and ``roomcast serve --workers 2``
   with ``ROOMCAST_REDIS_URL`` (a SQLite file in a temporary folder, ``auth=jwt``), the
   server pinned to ``--server-cpus`` and this client (and Redis) to ``--client-cpus``;
2. churns for ``--minutes``: ``--clients`` concurrent clients each open a connection
   after another (WebSocket, or an SSE stream for ``--sse-share`` of them), subscribe
   to a few rooms of a window of room names that slides on (new rooms all the time,
   old ones left to expire), some resuming from a position they saw before
   (``since`` / ``Last-Event-ID``); WebSocket clients publish, ask presence and
   history, sometimes unsubscribe, then close, or drop the TCP connection without a
   close; users come and go too (a new token subject now and then);
3. goes idle for ``--idle-minutes`` (the server stays up, nobody connected);
4. reads the RSS of the supervisor and every worker from /proc every ``--interval``
   seconds, prints a table, and a verdict against issue 15's criteria:

   * *levels off*: the total RSS of the last ``--window-minutes`` of churn grows by
     less than ``--max-growth`` (1%);
   * *falls back*: at the end of the idle phase the total is within ``--max-idle-excess``
     (10%) of the level after the warm-up (the sample at ``--warmup-minutes``).

Exit status 0 when both hold, 1 when one fails, 2 when the run itself failed.
``--json PATH`` writes every sample and the verdict. ``PYTHONPATH`` reaches the
server, so ``PYTHONPATH=/some/checkout/server`` soaks another copy of the code;
``--server-env NAME=VALUE`` adds settings or allocator knobs (``MALLOC_ARENA_MAX=2``).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import json
import os
import random
import secrets
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from roomcast.auth.tokens import issue_token
from roomcast.bench.procfs import process_tree, rss_bytes
from roomcast.bench.sse import SseChannel
from roomcast.testing import ReplyError, connect
from run import free_port, redis_server, stop_group, wait_for_port

MB = 1024 * 1024
STOP_TIMEOUT = 15.0


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


# -- what the clients share ------------------------------------------------------------


@dataclass
class Churn:
    """The clients' shared state: names of rooms and users, positions seen, counts."""

    opts: argparse.Namespace
    base_url: str
    secret: str | None
    started: float = field(default_factory=time.monotonic)
    positions: dict[str, tuple[str, int]] = field(default_factory=dict)
    counts: collections.Counter[str] = field(default_factory=collections.Counter)
    errors: collections.Counter[str] = field(default_factory=collections.Counter)

    def _first_room(self) -> int:
        minutes = (time.monotonic() - self.started) / 60
        return int(minutes * self.opts.new_rooms_per_minute)

    def rooms(self, rng: random.Random, count: int) -> list[str]:
        """``count`` distinct rooms of the current window (it slides as time passes)."""
        first = self._first_room()
        picked = rng.sample(range(first, first + self.opts.rooms), count)
        return [f"soak:r{n}" for n in picked]

    def user(self, rng: random.Random) -> str:
        """A user of the current set, which also changes as time passes."""
        minutes = (time.monotonic() - self.started) / 60
        first = int(minutes * self.opts.new_users_per_minute)
        return f"u{rng.randrange(first, first + self.opts.users)}"

    def token(self, user: str) -> str | None:
        if self.secret is None:
            return None
        rooms = ["soak:*", f"dm:{user}:*"]  # one pattern of its own per user, as apps do
        return issue_token(self.secret, user, ttl=3600, rooms=rooms, publish=rooms, name=user)

    def saw(self, frame: dict[str, Any]) -> None:
        if frame.get("type") == "message":
            self.positions[frame["room"]] = (frame["epoch"], frame["offset"])

    def forget_old_rooms(self) -> None:
        """Keep only positions of rooms still in the window (the client's own memory)."""
        first = self._first_room()
        for room in [r for r in self.positions if int(r[len("soak:r") :]) < first]:
            del self.positions[room]

    def since(self, rng: random.Random, room: str) -> tuple[str, int] | None:
        return self.positions.get(room) if rng.random() < self.opts.resume_share else None


async def websocket_session(churn: Churn, rng: random.Random) -> None:
    opts = churn.opts
    user = churn.user(rng)
    ws_url = churn.base_url.replace("http", "ws", 1) + "/ws"
    client = await connect(ws_url, token=churn.token(user), name=user, timeout=opts.timeout)
    aborted = False
    try:
        rooms = churn.rooms(rng, rng.randint(1, opts.rooms_per_client))
        for room in rooms:
            since = churn.since(rng, room)
            position = None if since is None else {"epoch": since[0], "offset": since[1]}
            await client.subscribe(room, position)
            churn.counts["resumes" if since else "subscribes"] += 1
        for n in range(rng.randint(1, opts.publishes)):
            data = {"n": n, "from": user, "text": "x" * rng.randint(10, opts.payload_bytes)}
            await client.publish(rng.choice(rooms), data)
            churn.counts["publishes"] += 1
        await client.presence(rng.choice(rooms))
        await client.history(rng.choice(rooms), limit=rng.randint(1, 50))
        await asyncio.sleep(rng.uniform(0.2, opts.hold))
        for frame in client.events:
            churn.saw(frame)
        client.events.clear()
        if len(rooms) > 1 and rng.random() < 0.3:
            await client.unsubscribe(rooms[0])
        if rng.random() < opts.abort_share:  # the peer vanishes: no close frame
            client.ws.transport.abort()
            aborted = True
            churn.counts["aborts"] += 1
    finally:
        if not aborted:
            await client.close()
    churn.counts["websocket"] += 1


def _last_event_id(churn: Churn, rng: random.Random, rooms: list[str]) -> str | None:
    known = {room: churn.since(rng, room) for room in rooms}
    known = {room: pos for room, pos in known.items() if pos is not None}
    if not known:
        return None
    if len(rooms) == 1:
        epoch, offset = known[rooms[0]]
        return f"{epoch}:{offset}"
    return ";".join(f"{room}={epoch}:{offset}" for room, (epoch, offset) in known.items())


async def sse_session(churn: Churn, rng: random.Random) -> None:
    opts = churn.opts
    user = churn.user(rng)
    rooms = churn.rooms(rng, rng.randint(1, opts.rooms_per_client))
    headers = {}
    token = churn.token(user)
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    if (last := _last_event_id(churn, rng, rooms)) is not None:
        headers["Last-Event-ID"] = last
        churn.counts["resumes"] += 1
    query = urlencode([("room", room) for room in rooms] + [("name", user)])
    stream = await SseChannel.open(f"{churn.base_url}/events?{query}", headers, opts.timeout)
    try:
        deadline = time.monotonic() + rng.uniform(0.5, opts.hold)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout_at(asyncio.get_running_loop().time() + opts.hold):
                while time.monotonic() < deadline:
                    name, data = await stream.next_event()
                    if name in (b"", b"message"):
                        churn.saw(json.loads(data))
    finally:
        if rng.random() < opts.abort_share:
            stream.abort()
            churn.counts["aborts"] += 1
        else:
            await stream.close()
    churn.counts["sse"] += 1


async def client_loop(churn: Churn, index: int, until: float) -> None:
    rng = random.Random(f"{churn.opts.seed}-{index}")
    while time.monotonic() < until:
        sse = rng.random() < churn.opts.sse_share
        try:
            async with asyncio.timeout(churn.opts.timeout + 2 * churn.opts.hold):
                await (sse_session if sse else websocket_session)(churn, rng)
        except ReplyError as exc:
            churn.errors[f"reply:{exc.code}"] += 1
        except Exception as exc:
            churn.errors[type(exc).__name__] += 1
        await asyncio.sleep(rng.uniform(0, churn.opts.pause))


# -- the server and its memory -------------------------------------------------------------


@dataclass
class Sample:
    minute: float
    phase: str
    rss: dict[str, int]  # "supervisor", "worker 1", ...: bytes
    sessions: int
    errors: int

    @property
    def total(self) -> int:
        return sum(self.rss.values())


def _role(pid: int) -> str:
    try:
        command = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return "gone"
    return "tracker" if b"resource_tracker" in command else "worker"


def read_rss(pid: int) -> dict[str, int]:
    """RSS of the supervisor, each worker (in pid order) and multiprocessing's
    resource tracker, in bytes."""
    pids = process_tree(pid)
    if not pids:
        raise RuntimeError("the server is gone")
    found = {"supervisor": rss_bytes(pid) or 0}
    workers = 0
    for child in sorted(p for p in pids if p != pid):
        role = _role(child)
        if role == "worker":
            workers += 1
            role = f"worker {workers}"
        found[role] = rss_bytes(child) or 0
    return found


@contextlib.contextmanager
def server(opts: argparse.Namespace, redis_url: str, work: Path) -> Iterator[tuple[int, int, str]]:
    """Start ``roomcast serve``; yield (pid, port, JWT secret or ""); stop it on exit."""
    port = free_port()
    env = {
        **os.environ,
        "ROOMCAST_REDIS_URL": redis_url,
        "ROOMCAST_DATABASE_URL": f"sqlite+aiosqlite:///{work / 'soak.db'}",
        "ROOMCAST_ROOM_TTL": str(opts.room_ttl),
        "ROOMCAST_AUTH": opts.auth,
    }
    secret = ""
    if opts.auth == "jwt":
        secret = env["ROOMCAST_JWT_SECRET"] = secrets.token_urlsafe(32)
    for pair in opts.server_env:
        name, _, value = pair.partition("=")
        env[name] = value
    command = [
        sys.executable, "-m", "roomcast", "serve", "--workers", str(opts.workers),
        "--port", str(port), "--log-level", opts.log_level,
    ]  # fmt: skip
    if opts.server_cpus:
        command = ["taskset", "-c", opts.server_cpus, *command]
    with (work / "server.log").open("wb") as server_log:
        proc = subprocess.Popen(
            command, env=env, cwd=work, stdout=server_log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
    try:
        wait_for_port(port, proc, "/readyz")
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if sum(_role(p) == "worker" for p in process_tree(proc.pid)) >= opts.workers:
                break
            time.sleep(0.2)
        time.sleep(3.0)  # every worker has run its lifespan, not only the first to answer
        yield proc.pid, port, secret
    finally:
        stop_group(proc, STOP_TIMEOUT)


async def soak(opts: argparse.Namespace, pid: int, base_url: str, secret: str) -> list[Sample]:
    """Churn, then idle; a sample every ``--interval`` seconds of each phase, one
    when the churn has ended (every client done), and one at the very end."""
    churn = Churn(opts, base_url, secret or None)
    start = time.monotonic()
    samples: list[Sample] = []

    def take(phase: str) -> None:
        sessions = churn.counts["websocket"] + churn.counts["sse"]
        minute = round((time.monotonic() - start) / 60, 2)
        sample = Sample(minute, phase, read_rss(pid), sessions, sum(churn.errors.values()))
        samples.append(sample)
        print_row(sample)

    async def every_interval(phase: str, until: float) -> None:
        at = time.monotonic() + opts.interval
        while at < until - 1:
            await asyncio.sleep(at - time.monotonic())
            take(phase)
            churn.forget_old_rooms()
            at += opts.interval
        await asyncio.sleep(max(0.0, until - time.monotonic()))

    print_header(read_rss(pid))
    take("start")
    churn_end = start + opts.minutes * 60
    clients = [client_loop(churn, i, churn_end) for i in range(opts.clients)]
    await asyncio.gather(every_interval("churn", churn_end), *clients)
    take("end")
    await every_interval("idle", time.monotonic() + opts.idle_minutes * 60)
    take("idle")
    log(f"sessions: {dict(churn.counts)}")
    log(f"errors: {dict(churn.errors) or 'none'}")
    opts.counts, opts.errors = dict(churn.counts), dict(churn.errors)
    return samples


def print_header(rss: dict[str, int]) -> None:
    names = "".join(f"{name:>12}" for name in rss)
    print(f"{'minute':>7} {'phase':>6}{names}{'total':>10}{'sessions':>10}{'errors':>8}")


def print_row(s: Sample) -> None:
    mb = "".join(f"{v / MB:>9.1f} MB"[-12:] for v in s.rss.values())
    print(f"{s.minute:>7.1f} {s.phase:>6}{mb}{s.total / MB:>7.1f} MB{s.sessions:>10}{s.errors:>8}")
    sys.stdout.flush()


# -- the verdict ----------------------------------------------------------------------------


def at(samples: list[Sample], minute: float) -> Sample:
    """The sample closest to ``minute``."""
    return min(samples, key=lambda s: abs(s.minute - minute))


def verdict(opts: argparse.Namespace, samples: list[Sample]) -> dict[str, Any]:
    warmup = min(opts.warmup_minutes, opts.minutes / 3)
    window = min(opts.window_minutes, opts.minutes - warmup)
    churned = [s for s in samples if s.phase in ("start", "churn", "end")]
    end = churned[-1]
    window_start = at(churned, end.minute - window)
    level = at(churned, warmup)
    last = samples[-1]
    growth = (end.total - window_start.total) / window_start.total
    excess = (last.total - level.total) / level.total
    return {
        "warmup_minutes": warmup,
        "window_minutes": window,
        "post_warmup_mb": level.total / MB,
        "window_start_mb": window_start.total / MB,
        "churn_end_mb": end.total / MB,
        "idle_end_mb": last.total / MB,
        "growth_in_window": growth,
        "idle_excess": excess,
        "levels_off": growth < opts.max_growth,
        "falls_back": excess <= opts.max_idle_excess,
    }


def report(result: dict[str, Any], opts: argparse.Namespace) -> None:
    print()
    print(
        f"levels off: total RSS {result['window_start_mb']:.1f} -> {result['churn_end_mb']:.1f}"
        f" MB over the last {result['window_minutes']:g} min of churn: "
        f"{result['growth_in_window']:+.2%} (limit {opts.max_growth:.0%}): "
        + ("PASS" if result["levels_off"] else "FAIL")
    )
    print(
        f"falls back: {result['idle_end_mb']:.1f} MB after {opts.idle_minutes:g} min idle, "
        f"{result['idle_excess']:+.2%} of the {result['post_warmup_mb']:.1f} MB after the "
        f"{result['warmup_minutes']:g} min warm-up (limit +{opts.max_idle_excess:.0%}): "
        + ("PASS" if result["falls_back"] else "FAIL")
    )


def options() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add = p.add_argument
    add("--minutes", type=float, default=30.0, help="churn duration (default 30)")
    add("--idle-minutes", type=float, default=10.0, help="idle duration after (default 10)")
    add("--warmup-minutes", type=float, default=5.0, help="at most a third of --minutes")
    add("--window-minutes", type=float, default=10.0, help="level-off window (default 10)")
    add("--max-growth", type=float, default=0.01, help="in the window (default 0.01)")
    add("--max-idle-excess", type=float, default=0.10, help="over post-warm-up (default 0.1)")
    add("--interval", type=float, default=60.0, help="seconds between samples (default 60)")
    add("--clients", type=int, default=40, help="concurrent clients (default 40)")
    add("--sse-share", type=float, default=0.2, help="of sessions that are SSE streams")
    add("--rooms", type=int, default=60, help="rooms in the active window (default 60)")
    add("--new-rooms-per-minute", type=float, default=30.0, help="how fast the window slides")
    add("--rooms-per-client", type=int, default=3, help="most rooms one session joins")
    add("--users", type=int, default=200, help="users in the active set (default 200)")
    add("--new-users-per-minute", type=float, default=50.0)
    add("--publishes", type=int, default=5, help="most publishes per WebSocket session")
    add("--payload-bytes", type=int, default=200, help="longest text of a publish")
    add("--resume-share", type=float, default=0.3, help="subscribes that resume with since")
    add("--abort-share", type=float, default=0.1, help="sessions that drop without a close")
    add("--hold", type=float, default=3.0, help="most seconds a session stays (default 3)")
    add("--pause", type=float, default=0.3, help="most seconds between a client's sessions")
    add("--timeout", type=float, default=10.0, help="per handshake and reply")
    add("--seed", default="soak")
    add("--workers", type=int, default=2)
    add("--auth", choices=("jwt", "off"), default="jwt")
    add("--room-ttl", type=float, default=120.0, help="ROOMCAST_ROOM_TTL (default 120 s)")
    add("--log-level", default="info", help="the server's (default info, to a file)")
    add("--server-cpus", default="0", help="taskset list for the server ('' for none)")
    add("--client-cpus", default="1", help="this client and Redis ('' for none)")
    add("--server-env", action="append", default=[], metavar="NAME=VALUE")
    add("--json", type=Path, help="write samples and verdict here")
    add("--keep", type=Path, help="copy the server's log here")
    return p.parse_args()


def main() -> int:
    opts = options()
    if opts.client_cpus:
        cpus = {int(c) for c in opts.client_cpus.split(",")}
        os.sched_setaffinity(0, cpus)  # Redis, started below, inherits it
    with tempfile.TemporaryDirectory(prefix="roomcast-soak-") as tmp:
        work = Path(tmp)
        try:
            with redis_server(work) as redis_url, server(opts, redis_url, work) as started:
                pid, port, secret = started
                base_url = f"http://127.0.0.1:{port}"
                log(f"server pid {pid} on {base_url}, Redis {redis_url}")
                samples = asyncio.run(soak(opts, pid, base_url, secret))
                with urllib.request.urlopen(f"{base_url}/readyz", timeout=5):
                    pass  # still serving at the end
        except Exception as exc:
            log(f"the soak failed: {exc!r}")
            print((work / "server.log").read_text(errors="replace")[-3000:])
            return 2
        finally:
            if opts.keep and (work / "server.log").exists():
                opts.keep.write_bytes((work / "server.log").read_bytes())
    result = verdict(opts, samples)
    report(result, opts)
    if opts.json:
        document = {
            "options": {k: str(v) for k, v in vars(opts).items() if k not in ("counts", "errors")},
            "counts": opts.counts,
            "errors": opts.errors,
            "samples": [{**vars(s), "total": s.total} for s in samples],
            "verdict": result,
        }
        opts.json.write_text(json.dumps(document, indent=1) + "\n")
    return 0 if result["levels_off"] and result["falls_back"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
