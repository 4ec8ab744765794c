"""Fan-out throughput: roomcast's hub against the FastAPI tutorial's broadcast loop.

Usage (from the repository root)::

    .venv/bin/python benchmarks/fanout.py [--subscribers 1000] [--messages 300]
        [--payload-bytes 100] [--rounds 3] [--json FILE]

Method
------
Each trial starts one server as its own process on a free loopback port:

* ``roomcast``: ``roomcast serve`` with the memory broker, presence off (with it,
  every join is announced to every subscriber already in the room: ~N²/2 notices
  of setup) and outboxes large enough (``--outbox-max-messages``) that the burst
  does not evict subscribers as slow consumers;
* ``tutorial``: ``peers/tutorial.py``, the FastAPI tutorial's ConnectionManager
  (``for ws in connections: await ws.send_text(...)``) on the same uvicorn
  settings (websockets-sansio, no compression).

Load client processes (``--clients``, each holding its share of the N
subscribers, using the ``websockets`` asyncio client without a receive-queue
limit) connect and subscribe. Once all are subscribed, a publisher process sends
M messages with ~``--payload-bytes`` of JSON data each, keeping at most
``--window`` unacknowledged (roomcast: its publish reply; tutorial: its own copy
of the broadcast, which comes back after every subscriber's send was issued).
The tutorial's publisher sends frames shaped like roomcast's message events, so
both servers write frames of the same size and the client treats them alike.

The clock runs from the first publish until every subscriber has received all
M messages: ``deliveries/s = N * M / elapsed``. Clients read frames as bytes and
parse only the ``offset`` out of each, checking every one: lost, duplicated and
reordered deliveries should all be 0, as should connections the server closed.

Rounds are interleaved (roomcast, tutorial, roomcast, tutorial, ...) and every
trial gets a fresh server process.

Reading the output
------------------
A line per trial, then a table: median deliveries/s per server over the rounds,
min, max and spread ((max - min) / median); ``server CPU`` is the CPU time the
server process used over the measured window divided by its length (near 100%:
the server is the bottleneck; lower: it waited on the load client, which shares
the machine), and the delivery checks summed over all rounds. The last line is
the ratio roomcast / tutorial of the medians, with each round's own ratio.
Absolute numbers swing by tens of percent between runs on a small machine; the
ratio within one run is the number to compare. ``--json FILE`` writes the
configuration, every trial and the summary.

Two things shape the numbers. The load client spends about as much CPU per
delivery as either server, and shares the machine with it, so both rates include
client overhead and the ratio understates the difference between the servers
themselves. And roomcast's rate grows with ``--window`` (a wider window lets
each connection's writer send several queued frames per wake-up), while the
tutorial's cannot (it sends inline, one publish at a time); compare at the same
window.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import multiprocessing as mp
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

ROOM = "bench"
KINDS = ("roomcast", "tutorial")
HOST = "127.0.0.1"
TUTORIAL_SERVER = Path(__file__).resolve().parent / "peers" / "tutorial.py"

SUBSCRIBE = json.dumps({"op": "subscribe", "id": 1, "room": ROOM}, separators=(",", ":"))
READY = '{"type":"ready"}'
MESSAGE_PREFIX = b'{"type":"message"'
OFFSET_KEY = b'"offset":'
REPLY_PREFIX = b'{"id":'
REPLY_OK = b'"ok":true'

CONNECT_CONCURRENCY = 64
SERVER_START_TIMEOUT = 20.0
SERVER_STOP_TIMEOUT = 10.0
CLOSE_TIMEOUT = 15.0
PIPE_SLACK = 10.0
"""Extra seconds the coordinator waits beyond a client's own deadline."""

Message = dict[str, Any]


@dataclass(frozen=True)
class Config:
    subscribers: int
    messages: int
    payload_bytes: int
    rounds: int
    window: int
    clients: int
    outbox_max_messages: int
    setup_timeout: float
    trial_timeout: float


class TrialError(Exception):
    """A trial could not be carried out (a server or client failed or timed out)."""


# -- frames (shared by both sides) ----------------------------------------------------


def _compact(obj: object) -> str:
    return json.dumps(obj, separators=(",", ":"))


def message_data(seq: int, size: int) -> dict[str, Any]:
    """A JSON object of about ``size`` bytes, numbered ``seq``."""
    data: dict[str, Any] = {"seq": seq, "pad": ""}
    data["pad"] = "x" * max(0, size - len(_compact(data)))
    return data


def publish_frames(kind: str, messages: int, payload_bytes: int) -> list[str]:
    """The publisher's frames for ``kind``; message k lands at offset k (fresh room)."""
    frames = []
    for seq in range(1, messages + 1):
        data = message_data(seq, payload_bytes)
        if kind == "roomcast":
            frame = {"op": "publish", "id": seq, "room": ROOM, "data": data}
        else:  # shaped like roomcast's message event, so both deliver the same bytes
            frame = {
                "type": "message",
                "room": ROOM,
                "epoch": "tutorial",
                "offset": seq,
                "data": data,
                "sender": "anon-000000",
                "ts": time.time(),
            }
        frames.append(_compact(frame))
    return frames


def message_offset(frame: bytes) -> int | None:
    """The offset of a message event frame without decoding it; None for other frames."""
    if not frame.startswith(MESSAGE_PREFIX):
        return None
    start = frame.find(OFFSET_KEY, len(MESSAGE_PREFIX))
    if start < 0:
        return None
    start += len(OFFSET_KEY)
    return int(frame[start : frame.find(b",", start)])


# -- load client (runs in child processes) ---------------------------------------------


async def open_socket(url: str, timeout: float) -> ClientConnection:
    return await connect(
        url,
        max_queue=None,  # no client-side flow control: read as fast as we can
        max_size=None,
        compression=None,
        ping_interval=None,
        proxy=None,
        open_timeout=timeout,
        close_timeout=2,
    )


async def join(ws: ClientConnection, kind: str) -> int:
    """Wait until the server fans out to ``ws``; the room's offset at that point."""
    if kind == "roomcast":
        await ws.send(SUBSCRIBE)
        while True:
            reply = json.loads(await ws.recv())
            if reply.get("id") == 1:
                if not reply.get("ok"):
                    raise TrialError(f"subscribe failed: {reply}")
                return int(reply["result"]["offset"])
    while await ws.recv() != READY:
        pass
    return 0


class Stream:
    """Delivery state of one subscriber: the next offset expected and any gaps."""

    __slots__ = ("expect", "last", "skipped")

    def __init__(self, first: int, last: int) -> None:
        self.expect = first
        self.last = last
        self.skipped: set[int] = set()

    def missing(self) -> int:
        return len(self.skipped) + max(0, self.last - self.expect + 1)


class Tally:
    """What one client process's subscribers received."""

    def __init__(self) -> None:
        self.received = 0
        self.duplicated = 0
        self.reordered = 0
        self.other_frames = 0
        self.finished = 0
        self.t_done: float | None = None
        self.closed: dict[str, int] = {}

    def irregular(self, stream: Stream, offset: int) -> None:
        """Account for ``offset`` arriving when ``stream.expect`` was due."""
        if offset > stream.expect:
            stream.skipped.update(range(stream.expect, offset))
            stream.expect = offset + 1
        elif offset in stream.skipped:
            stream.skipped.discard(offset)
            self.reordered += 1
        else:
            self.duplicated += 1

    def close(self, exc: ConnectionClosed) -> None:
        code = str(exc.rcvd.code) if exc.rcvd is not None else "no close frame"
        self.closed[code] = self.closed.get(code, 0) + 1


async def receive(ws: ClientConnection, stream: Stream, tally: Tally) -> None:
    """Read message events until the last one arrives (or the connection closes)."""
    recv = ws.recv
    try:
        while stream.expect <= stream.last:
            offset = message_offset(await recv(decode=False))
            if offset is None:
                tally.other_frames += 1
                continue
            tally.received += 1
            if offset == stream.expect:
                stream.expect = offset + 1
            else:
                tally.irregular(stream, offset)
    except ConnectionClosed as exc:
        tally.close(exc)
        return
    tally.finished += 1
    tally.t_done = time.monotonic()


async def next_command(conn: Connection, timeout: float) -> Message:
    """The coordinator's next message, without blocking the event loop."""
    if not await asyncio.to_thread(conn.poll, timeout):
        raise TrialError(f"no command from the coordinator within {timeout:.0f}s")
    message: Message = conn.recv()
    return message


async def close_all(sockets: Sequence[ClientConnection]) -> None:
    try:
        async with asyncio.timeout(CLOSE_TIMEOUT):
            await asyncio.gather(*(ws.close() for ws in sockets), return_exceptions=True)
    except TimeoutError:
        for ws in sockets:
            ws.transport.abort()


async def subscribe_all(
    spec: Message, sockets: list[ClientConnection]
) -> list[tuple[ClientConnection, Stream]]:
    """Connect and subscribe ``spec["count"]`` sockets (also kept in ``sockets``)."""
    limit = asyncio.Semaphore(CONNECT_CONCURRENCY)

    async def one() -> tuple[ClientConnection, Stream]:
        async with limit:
            ws = await open_socket(spec["url"], spec["setup_timeout"])
            sockets.append(ws)  # closed by the caller, even if this fails later
            base = await join(ws, spec["kind"])
        return ws, Stream(base + 1, base + spec["messages"])

    async with asyncio.timeout(spec["setup_timeout"]):
        return await asyncio.gather(*(one() for _ in range(spec["count"])))


async def subscriber_trial(spec: Message, conn: Connection) -> None:
    """Subscribe, report ready, count deliveries, report, close when told to."""
    sockets: list[ClientConnection] = []
    tally = Tally()
    try:
        subscribers = await subscribe_all(spec, sockets)
        gc.collect()
        gc.freeze()  # the client's long-lived objects: out of the collector's way
        tasks = [asyncio.create_task(receive(ws, stream, tally)) for ws, stream in subscribers]
        conn.send({"ready": True, "connected": len(subscribers)})
        cpu = time.process_time()
        _, pending = await asyncio.wait(tasks, timeout=spec["trial_timeout"])
        cpu = time.process_time() - cpu
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        report = dict(vars(tally))
        report.update(lost=sum(stream.missing() for _, stream in subscribers), cpu_seconds=cpu)
        conn.send(report)
        await next_command(conn, spec["trial_timeout"] + PIPE_SLACK)
    finally:
        gc.unfreeze()
        await close_all(sockets)
    conn.send({"closed": True})


async def send_windowed(ws: ClientConnection, kind: str, frames: list[str], window: int) -> Message:
    """Send ``frames`` keeping at most ``window`` unacknowledged; time it."""
    slots = asyncio.Semaphore(window)
    counts = {"acks": 0, "errors": 0}
    first_error: list[str] = []

    async def read_acks() -> None:
        try:
            while counts["acks"] + counts["errors"] < len(frames):
                frame = await ws.recv(decode=False)
                if kind == "roomcast":
                    if not frame.startswith(REPLY_PREFIX):
                        continue
                    if REPLY_OK in frame:
                        counts["acks"] += 1
                    else:
                        counts["errors"] += 1
                        if not first_error:
                            first_error.append(frame[:300].decode(errors="replace"))
                elif frame.startswith(MESSAGE_PREFIX):
                    counts["acks"] += 1
                else:
                    continue
                slots.release()
        finally:
            for _ in range(window):  # never leave the sender waiting on a dead reader
                slots.release()

    reader = asyncio.create_task(read_acks())
    t_start = time.monotonic()
    try:
        for frame in frames:
            await slots.acquire()
            if reader.done():
                break
            await ws.send(frame)
        await reader
    finally:
        reader.cancel()
        with contextlib.suppress(asyncio.CancelledError, ConnectionClosed):
            await reader
    return {"t_start": t_start, "t_acked": time.monotonic(), **counts, "first_error": first_error}


async def publisher_trial(spec: Message, conn: Connection) -> None:
    """Connect, report ready, publish on the coordinator's go, report."""
    kind = spec["kind"]
    frames = publish_frames(kind, spec["messages"], spec["payload_bytes"])
    ws = await open_socket(spec["url"], spec["setup_timeout"])
    try:
        if kind == "tutorial":
            await join(ws, kind)
        conn.send({"ready": True})
        await next_command(conn, spec["setup_timeout"] + PIPE_SLACK)
        try:
            async with asyncio.timeout(spec["trial_timeout"]):
                report = await send_windowed(ws, kind, frames, spec["window"])
        except TimeoutError:
            raise TrialError(f"not acknowledged within {spec['trial_timeout']}s") from None
    finally:
        await close_all([ws])
    conn.send(report)


def client_main(conn: Connection) -> None:
    """A load client process: carry out trials until told to stop or orphaned."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the coordinator stops us
    while True:
        try:
            spec: Message = conn.recv()
        except (EOFError, OSError):
            return
        if spec["role"] == "stop":
            return
        trial = subscriber_trial if spec["role"] == "subscribe" else publisher_trial
        try:
            asyncio.run(trial(spec, conn))
        except Exception as exc:
            with contextlib.suppress(OSError):
                conn.send({"error": f"{spec['role']}: {exc!r}"})


# -- coordinator: client processes -----------------------------------------------------


def expect_message(conn: Connection, timeout: float, what: str) -> Message:
    if not conn.poll(timeout):
        raise TrialError(f"no {what} within {timeout:.0f}s")
    message: Message = conn.recv()
    if "error" in message:
        raise TrialError(f"{what}: {message['error']}")
    return message


def stop_process(proc: BaseProcess | subprocess.Popen[bytes], grace: float) -> None:
    """Terminate, wait ``grace`` seconds, then kill."""
    if isinstance(proc, subprocess.Popen):
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(grace)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        return
    if proc.is_alive():
        proc.terminate()
        proc.join(grace)
        if proc.is_alive():
            proc.kill()
            proc.join(5)


class ClientPool:
    """``clients`` subscriber processes and one publisher process."""

    def __init__(self, clients: int) -> None:
        self.clients = clients
        self.conns: list[Connection] = []
        self.procs: list[BaseProcess] = []

    @property
    def subscribers(self) -> list[Connection]:
        return self.conns[: self.clients]

    @property
    def publisher(self) -> Connection:
        return self.conns[self.clients]

    def start(self) -> None:
        ctx = mp.get_context("spawn")
        for i in range(self.clients + 1):
            parent, child = ctx.Pipe()
            name = f"fanout-client-{i}" if i < self.clients else "fanout-publisher"
            proc = ctx.Process(target=client_main, args=(child,), name=name, daemon=True)
            proc.start()
            child.close()
            self.conns.append(parent)
            self.procs.append(proc)

    def stop(self) -> None:
        for conn in self.conns:
            with contextlib.suppress(OSError):
                conn.send({"role": "stop"})
        deadline = time.monotonic() + 5
        for proc in self.procs:
            proc.join(max(0.0, deadline - time.monotonic()))
            stop_process(proc, 2)
        for conn in self.conns:
            conn.close()
        self.conns.clear()
        self.procs.clear()

    def restart(self) -> None:
        self.stop()
        self.start()


# -- coordinator: servers ----------------------------------------------------------------


@dataclass
class Server:
    kind: str
    port: int
    process: subprocess.Popen[bytes]
    output: str = ""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def server_command(kind: str, port: int) -> list[str]:
    if kind == "tutorial":
        return [sys.executable, str(TUTORIAL_SERVER), "--host", HOST, "--port", str(port)]
    script = Path(sys.executable).with_name("roomcast")
    entry = [str(script)] if script.exists() else [sys.executable, "-m", "roomcast"]
    return [*entry, "serve", "--host", HOST, "--port", str(port)]


def server_env(cfg: Config) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ROOMCAST_")}
    outbox_bytes = max(4 << 20, cfg.outbox_max_messages * (cfg.payload_bytes + 512))
    env.update(
        ROOMCAST_LOG_LEVEL="warning",
        ROOMCAST_PRESENCE="false",
        ROOMCAST_PUBLISH_RATE="0",  # one publisher, as fast as acks allow
        ROOMCAST_OUTBOX_MAX_MESSAGES=str(cfg.outbox_max_messages),
        ROOMCAST_OUTBOX_MAX_BYTES=str(outbox_bytes),
    )
    return env


def wait_listening(proc: subprocess.Popen[bytes], port: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise TrialError(f"server exited with {proc.returncode} before listening")
        try:
            with socket.create_connection((HOST, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise TrialError(f"server not listening on port {port} within {timeout:.0f}s")


@contextlib.contextmanager
def running_server(kind: str, cfg: Config) -> Iterator[Server]:
    """A fresh server process on a free port; stopped (and its output kept) on exit."""
    with tempfile.TemporaryFile() as log:
        port = free_port()
        proc = subprocess.Popen(
            server_command(kind, port),
            env=server_env(cfg),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # Ctrl-C reaches only us; we stop it
        )
        server = Server(kind, port, proc)
        try:
            wait_listening(proc, port, SERVER_START_TIMEOUT)
            yield server
        finally:
            stop_process(proc, SERVER_STOP_TIMEOUT)
            log.seek(0)
            server.output = log.read().decode(errors="replace").strip()


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of a process so far (Linux /proc); None elsewhere."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# -- coordinator: trials -----------------------------------------------------------------


@dataclass
class Trial:
    server: str
    round: int
    subscribers: int
    messages: int
    deliveries_per_s: float | None = None
    elapsed: float | None = None
    publish_seconds: float | None = None
    server_cpu: float | None = None
    client_cpu_seconds: float | None = None
    received: int = 0
    lost: int = 0
    duplicated: int = 0
    reordered: int = 0
    unfinished: int = 0
    publish_errors: int = 0
    closed: dict[str, int] = field(default_factory=dict)
    error: str | None = None
    server_output: str = ""


def shares(total: int, parts: int) -> list[int]:
    return [total // parts + (1 if i < total % parts else 0) for i in range(parts)]


def trial_spec(role: str, kind: str, url: str, cfg: Config) -> Message:
    return {
        "role": role,
        "kind": kind,
        "url": url,
        "messages": cfg.messages,
        "payload_bytes": cfg.payload_bytes,
        "window": cfg.window,
        "setup_timeout": cfg.setup_timeout,
        "trial_timeout": cfg.trial_timeout,
    }


def measure(pool: ClientPool, server: Server, cfg: Config, trial: Trial) -> None:
    """One trial against a running server; fills in ``trial``."""
    url = f"ws://{HOST}:{server.port}/ws"
    for conn, count in zip(pool.subscribers, shares(cfg.subscribers, cfg.clients), strict=True):
        conn.send({**trial_spec("subscribe", server.kind, url, cfg), "count": count})
    wait = cfg.setup_timeout + PIPE_SLACK
    for conn in pool.subscribers:
        expect_message(conn, wait, "subscribers ready")
    pool.publisher.send(trial_spec("publish", server.kind, url, cfg))
    expect_message(pool.publisher, wait, "publisher ready")

    cpu_before, wall_before = cpu_seconds(server.process.pid), time.monotonic()
    pool.publisher.send({"go": True})
    wait = cfg.trial_timeout + PIPE_SLACK
    published = expect_message(pool.publisher, wait, "publish report")
    reports = [expect_message(conn, wait, "delivery report") for conn in pool.subscribers]
    cpu_after, wall_after = cpu_seconds(server.process.pid), time.monotonic()
    for conn in pool.subscribers:
        conn.send({"close": True})
    for conn in pool.subscribers:
        expect_message(conn, CLOSE_TIMEOUT + PIPE_SLACK, "close")

    record(trial, published, reports)
    if cpu_before is not None and cpu_after is not None:
        trial.server_cpu = (cpu_after - cpu_before) / (wall_after - wall_before)


def record(trial: Trial, published: Message, reports: list[Message]) -> None:
    trial.publish_seconds = published["t_acked"] - published["t_start"]
    trial.publish_errors = published["errors"]
    if published["first_error"]:
        trial.error = f"publish rejected: {published['first_error'][0]}"
    for report in reports:
        trial.received += report["received"]
        trial.lost += report["lost"]
        trial.duplicated += report["duplicated"]
        trial.reordered += report["reordered"]
        for code, n in report["closed"].items():
            trial.closed[code] = trial.closed.get(code, 0) + n
    trial.unfinished = trial.subscribers - sum(r["finished"] for r in reports)
    trial.client_cpu_seconds = sum(r["cpu_seconds"] for r in reports)
    if trial.unfinished == 0:
        trial.elapsed = max(r["t_done"] for r in reports) - published["t_start"]
        trial.deliveries_per_s = trial.subscribers * trial.messages / trial.elapsed


def run_trial(kind: str, round_no: int, cfg: Config, pool: ClientPool) -> Trial:
    trial = Trial(kind, round_no, cfg.subscribers, cfg.messages)
    server: Server | None = None
    try:
        with running_server(kind, cfg) as server:
            measure(pool, server, cfg, trial)
    except (TrialError, OSError, EOFError) as exc:  # OSError, EOFError: a client died
        trial.error = str(exc) or repr(exc)
        pool.restart()  # its processes may be mid-trial: start clean
    if server is not None:
        trial.server_output = server.output[-4000:]
    return trial


# -- output ----------------------------------------------------------------------------------


def _rate(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f}"


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{value:.0%}"


def describe(trial: Trial) -> str:
    head = f"round {trial.round} {trial.server:<8}"
    if trial.error is not None:
        return f"{head} FAILED: {trial.error}"
    if trial.deliveries_per_s is None:
        return (
            f"{head} FAILED: {trial.unfinished} subscribers did not get every message "
            f"(lost {trial.lost}, connections closed by the server: {trial.closed or 0})"
        )
    return (
        f"{head} {_rate(trial.deliveries_per_s):>11} deliveries/s  "
        f"elapsed {trial.elapsed:.2f}s  publish {trial.publish_seconds:.2f}s  "
        f"server CPU {_percent(trial.server_cpu)}  client CPU {trial.client_cpu_seconds:.1f}s  "
        f"lost {trial.lost} dup {trial.duplicated} reordered {trial.reordered} "
        f"closed {sum(trial.closed.values())}"
    )


def summarize(trials: list[Trial]) -> dict[str, Any]:
    summary: dict[str, Any] = {}
    for kind in KINDS:
        mine = [t for t in trials if t.server == kind]
        rates = [t.deliveries_per_s for t in mine if t.deliveries_per_s and t.error is None]
        cpus = [t.server_cpu for t in mine if t.server_cpu is not None]
        median = statistics.median(rates) if rates else None
        summary[kind] = {
            "median": median,
            "min": min(rates, default=None),
            "max": max(rates, default=None),
            "spread": (max(rates) - min(rates)) / median if median else None,
            "server_cpu": statistics.median(cpus) if cpus else None,
            "failed": len(mine) - len(rates),
            **{k: sum(getattr(t, k) for t in mine) for k in ("lost", "duplicated", "reordered")},
            "closed": sum(sum(t.closed.values()) for t in mine),
        }
    rc, tu = summary["roomcast"]["median"], summary["tutorial"]["median"]
    summary["ratio"] = rc / tu if rc and tu else None
    by_round = {(t.round, t.server): t.deliveries_per_s for t in trials if t.error is None}
    rounds = sorted({t.round for t in trials})
    summary["round_ratios"] = [
        a / b
        for a, b in ((by_round.get((r, "roomcast")), by_round.get((r, "tutorial"))) for r in rounds)
        if a and b
    ]
    return summary


TABLE_COLUMNS = (
    ("server", 10),
    ("deliveries/s", 13),
    ("min", 10),
    ("max", 10),
    ("spread", 8),
    ("server CPU", 12),
    ("lost", 6),
    ("dup", 5),
    ("reordered", 10),
    ("closed", 7),
    ("failed", 7),
)


def _row(cells: Sequence[object]) -> str:
    (first, width), *rest = zip(cells, (w for _, w in TABLE_COLUMNS), strict=True)
    return f"{first!s:<{width}}" + "".join(f"{cell!s:>{w}}" for cell, w in rest)


def print_table(cfg: Config, summary: dict[str, Any]) -> None:
    print()
    print(
        f"fan-out: {cfg.subscribers} subscribers, {cfg.messages} messages of "
        f"~{cfg.payload_bytes} B, window {cfg.window}, {cfg.rounds} round(s), "
        f"{cfg.clients} client processes, {os.cpu_count()} CPUs"
    )
    print(_row([name for name, _ in TABLE_COLUMNS]))
    for kind in KINDS:
        s = summary[kind]
        rates = [_rate(s["median"]), _rate(s["min"]), _rate(s["max"])]
        percents = [_percent(s["spread"]), _percent(s["server_cpu"])]
        checks = [s["lost"], s["duplicated"], s["reordered"], s["closed"], s["failed"]]
        print(_row([kind, *rates, *percents, *checks]))
    ratio = summary["ratio"]
    rounds = ", ".join(f"{r:.2f}x" for r in summary["round_ratios"]) or "-"
    print(f"roomcast / tutorial: {'-' if ratio is None else f'{ratio:.2f}x'} (by round: {rounds})")


def write_json(path: Path, cfg: Config, trials: list[Trial], summary: dict[str, Any]) -> None:
    machine = {"cpus": os.cpu_count(), "python": sys.version, "platform": platform.platform()}
    document = {
        "config": asdict(cfg),
        "machine": machine,
        "trials": [asdict(t) for t in trials],
        "summary": summary,
    }
    path.write_text(json.dumps(document, indent=2) + "\n")


# -- command line ------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> tuple[Config, Path | None]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add = parser.add_argument
    add("--subscribers", type=int, default=1000, help="WebSocket subscribers (default 1000)")
    add("--messages", type=int, default=300, help="messages published per trial (default 300)")
    add("--payload-bytes", type=int, default=100, help="JSON bytes of each message's data")
    add("--rounds", type=int, default=3, help="interleaved rounds of both servers (default 3)")
    add("--window", type=int, default=16, help="publishes in flight at most (default 16)")
    add("--clients", type=int, default=2, help="subscriber client processes (default 2)")
    add(
        "--outbox-max-messages",
        type=int,
        default=100_000,
        help="roomcast's ROOMCAST_OUTBOX_MAX_MESSAGES (server default 1000)",
    )
    add("--setup-timeout", type=float, default=60.0, help="seconds to connect and subscribe")
    add("--trial-timeout", type=float, default=120.0, help="seconds for one trial's deliveries")
    add("--json", type=Path, help="also write the numbers to this file")
    args = parser.parse_args(argv)
    positive = ("subscribers", "messages", "rounds", "window", "clients", "outbox_max_messages")
    for name in positive:
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    if args.clients > args.subscribers:
        parser.error("--clients must not exceed --subscribers")
    cfg = Config(
        subscribers=args.subscribers,
        messages=args.messages,
        payload_bytes=args.payload_bytes,
        rounds=args.rounds,
        window=args.window,
        clients=args.clients,
        outbox_max_messages=args.outbox_max_messages,
        setup_timeout=args.setup_timeout,
        trial_timeout=args.trial_timeout,
    )
    return cfg, args.json


def main(argv: Sequence[str] | None = None) -> int:
    cfg, json_path = parse_args(argv)
    trials: list[Trial] = []
    pool = ClientPool(cfg.clients)
    try:
        pool.start()
        for round_no in range(1, cfg.rounds + 1):
            for kind in KINDS:
                trial = run_trial(kind, round_no, cfg, pool)
                trials.append(trial)
                print(describe(trial), flush=True)
    except KeyboardInterrupt:
        print("interrupted; summarizing the trials so far", file=sys.stderr)
    finally:
        pool.stop()
    for trial in trials:
        if trial.server_output:
            print(f"\n{trial.server} output in round {trial.round}:\n{trial.server_output}")
    summary = summarize(trials)
    print_table(cfg, summary)
    if json_path is not None:
        write_json(json_path, cfg, trials, summary)
    failed = any(t.deliveries_per_s is None or t.error is not None for t in trials)
    return 1 if failed or len(trials) < 2 * cfg.rounds else 0


if __name__ == "__main__":
    sys.exit(main())
