"""A load client process: its share of the connections, driven by the coordinator.

The coordinator (:mod:`.coordinator`) starts ``--processes`` workers, each with a
:class:`WorkerSpec`, and steps them through one run over a pipe. Every worker goes
through the same phases; ``->`` is a message to the coordinator, ``<-`` a command:

====================  ===========================================================
setup                 open and join its connections (bounded concurrency)
                      -> ``connected`` (connect latencies, failures)
                      (``connect`` scenario: -> ``result``, then <- ``close``)
<- ``sync``           relaying servers only: the publisher sends barrier frames
                      until every subscriber has seen one; -> ``joined``
<- ``go``             times (wall clock) to start publishing, to open and to close
                      the measured window; publishers stop at its end, drain acks
                      -> ``published`` (highest acknowledged offset per room)
<- ``targets``        the highest acknowledged offset of every room, over all
                      workers: wait (``--grace`` at most) until every subscriber
                      has everything up to it; -> ``result``
<- ``close``          close every connection; -> ``closed``
====================  ===========================================================

``abort`` at any time (Ctrl-C, another worker failed, or the pipe closed) makes the
worker send what it has as its result and close. Progress snapshots go out twice a
second. A worker ignores SIGINT (the coordinator decides), stops by itself at a hard
deadline, and never waits on the pipe without a bound.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import math
import os
import resource
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

from .accounting import integrity
from .channel import Channel, ChannelError
from .config import BenchConfig
from .histogram import Histogram
from .join import open_probe, open_publisher, open_subscriber
from .malloc import keep_heap_top
from .roles import Subscriber, Tally, receive, sleep_until

__all__ = ["WorkerSpec", "worker_main"]

PROGRESS_INTERVAL = 0.5
POLL_INTERVAL = 0.02
CLOSE_TIMEOUT = 10.0
Message = dict[str, Any]


@dataclass(frozen=True)
class WorkerSpec:
    """One worker's share: ``subscribers`` as (room, count, members publish too)."""

    index: int
    config: BenchConfig
    subscribers: tuple[tuple[str, int], ...]
    publisher: bool
    """Whether this worker runs the room's publisher (fanout, sse)."""
    members: bool = False
    """rooms scenario: every subscriber also publishes."""

    @property
    def connections(self) -> int:
        return sum(count for _, count in self.subscribers)


def hard_deadline(cfg: BenchConfig) -> float:
    """Seconds after which a worker gives up by itself, whatever happens."""
    return 2 * cfg.setup_timeout + cfg.warmup + cfg.duration + 2 * cfg.grace + 60


class Worker:
    def __init__(self, spec: WorkerSpec, conn: Connection) -> None:
        self.spec = spec
        self.cfg = spec.config
        self.conn = conn
        self.tally = Tally()
        self.subscribers: list[Subscriber] = []
        self.publishers: list[Subscriber] = []
        self.probes: list[Channel] = []
        self.tasks: list[asyncio.Task[None]] = []
        self.commands: asyncio.Queue[Message] = asyncio.Queue()
        self.connect_latency = Histogram()
        self.connect_failed = 0
        self.connect_first: float | None = None
        self.connect_last: float | None = None
        self.targets: dict[str, int] = {}
        self.cpu = 0.0
        self.wall = 0.0
        self._cpu_mark: tuple[float, float] | None = None
        self.aborted = False
        self.main_task: asyncio.Task[Any] | None = None

    # -- pipe --------------------------------------------------------------------------

    def send(self, message: Message) -> None:
        with contextlib.suppress(OSError, ValueError):
            self.conn.send(message)

    def _on_pipe(self) -> None:
        try:
            message: Message = self.conn.recv()
        except (EOFError, OSError):  # the coordinator is gone
            asyncio.get_running_loop().remove_reader(self.conn.fileno())
            message = {"cmd": "abort"}
        if message["cmd"] != "abort":
            self.commands.put_nowait(message)
        elif not self.aborted:
            self.aborted = True
            if self.main_task is not None:
                self.main_task.cancel()

    async def command(self, name: str) -> Message:
        message = await self.commands.get()
        if message["cmd"] != name:
            raise RuntimeError(f"worker expected {name!r}, got {message['cmd']!r}")
        return message

    # -- CPU ----------------------------------------------------------------------------

    def start_cpu(self) -> None:
        times = os.times()
        self._cpu_mark = (times.user + times.system, time.monotonic())

    def stop_cpu(self) -> None:
        if self._cpu_mark is None:
            return
        times = os.times()
        self.cpu = times.user + times.system - self._cpu_mark[0]
        self.wall = time.monotonic() - self._cpu_mark[1]
        self._cpu_mark = None

    # -- phases ---------------------------------------------------------------------------

    async def main(self) -> None:
        loop = asyncio.get_running_loop()
        loop.add_reader(self.conn.fileno(), self._on_pipe)
        self.main_task = asyncio.current_task()
        progress = asyncio.create_task(self.report_progress())
        try:
            async with asyncio.timeout(hard_deadline(self.cfg)):
                await self.run()
        except asyncio.CancelledError:
            if not self.aborted:
                raise
            if self.main_task is not None:
                self.main_task.uncancel()
            self.stop_cpu()
            self.send(self.result(aborted=True))
        except TimeoutError:
            self.tally.error("worker:deadline", "the worker's hard deadline passed")
            self.stop_cpu()
            self.send(self.result(aborted=True))
        except Exception as exc:
            self.send({"ev": "fatal", "index": self.spec.index, "error": f"{exc}"})
        finally:
            progress.cancel()
            await self.close_all()
            with contextlib.suppress(Exception):
                loop.remove_reader(self.conn.fileno())
            self.send({"ev": "closed", "index": self.spec.index})

    async def run(self) -> None:
        cfg = self.cfg
        self.start_cpu()
        await self.setup()
        self.send(self.connected())
        if cfg.scenario == "connect":
            self.stop_cpu()
            self.send(self.result())
            await self.command("close")
            return
        publishers = [s.publisher for s in self.publishers + self.subscribers if s.publisher]
        syncs = []
        if cfg.barrier and cfg.publishes:
            await self.command("sync")
            # the room's one publisher (fanout, sse) sends the barrier frames
            syncs = [
                asyncio.create_task(s.publisher.sync()) for s in self.publishers if s.publisher
            ]
            await self.wait_joined(time.time() + cfg.setup_timeout)
        unjoined = sum(1 for s in self.subscribers if not s.joined)
        self.send({"ev": "joined", "index": self.spec.index, "unjoined": unjoined})

        go = await self.command("go")
        for publisher in publishers:
            publisher.syncing = False
        for task in syncs:
            task.cancel()
        self.tally.t_measure, self.tally.t_stop = go["t_measure"], go["t_stop"]
        runs = [
            asyncio.create_task(p.run(go["t_go"], go["t_stop"], go["t_measure"]))
            for p in publishers
        ]
        await sleep_until(go["t_measure"])
        self.start_cpu()
        await sleep_until(go["t_stop"])
        self.stop_cpu()
        if runs:  # a send blocked on a server that stopped reading ends here
            _, stuck = await asyncio.wait(runs, timeout=cfg.grace)
            for task in stuck:
                task.cancel()
                self.tally.error("publish:stuck", "a publish did not complete after the window")
            await asyncio.gather(*stuck, return_exceptions=True)
        drain_until = time.time() + cfg.grace
        await asyncio.gather(*(p.drain(drain_until) for p in publishers))
        acked: dict[str, int] = {}
        for p in publishers:
            if p.max_acked is not None:
                acked[p.room] = max(acked.get(p.room, 0), p.max_acked)
        self.send({"ev": "published", "index": self.spec.index, "acked": acked})

        self.targets = (await self.command("targets"))["targets"]
        await self.wait_complete(time.time() + cfg.grace)
        self.send(self.result())
        await self.command("close")

    async def setup(self) -> None:
        cfg = self.cfg
        share = max(1, math.ceil(cfg.concurrency / cfg.processes))
        limit = asyncio.Semaphore(share)
        if self.spec.publisher:
            publisher = await open_publisher(cfg, cfg.room, self.tally)
            self.publishers.append(publisher)
            self.tasks.append(asyncio.create_task(receive(publisher, self.tally)))

        async def one(room: str) -> None:
            async with limit:
                start = time.time()
                if self.connect_first is None or start < self.connect_first:
                    self.connect_first = start
                began = time.perf_counter()
                try:
                    if cfg.scenario == "connect":
                        channel, seconds = await open_probe(cfg)
                        self.probes.append(channel)
                    else:
                        sub = await open_subscriber(cfg, room, self.tally, member=self.spec.members)
                        seconds = time.perf_counter() - began
                        self.subscribers.append(sub)
                        self.tasks.append(asyncio.create_task(receive(sub, self.tally)))
                except ChannelError as exc:
                    self.connect_failed += 1
                    self.tally.error(exc.kind, str(exc))
                    return
                self.connect_latency.record(int(seconds * 1_000_000))
                self.connect_last = time.time()

        jobs = [one(room) for room, count in self.spec.subscribers for _ in range(count)]
        try:
            async with asyncio.timeout(cfg.setup_timeout):
                await asyncio.gather(*jobs)
        except TimeoutError:
            missing = self.spec.connections - len(self.subscribers) - len(self.probes)
            missing -= self.connect_failed
            self.connect_failed += missing
            self.tally.error("connect:setup-timeout", f"{missing} not connected in time")
        gc.collect()
        gc.freeze()  # the long-lived connection objects: out of the collector's way

    async def wait_joined(self, deadline: float) -> None:
        while time.time() < deadline:
            if all(s.joined for s in self.subscribers):
                return
            await asyncio.sleep(POLL_INTERVAL)
        missing = sum(1 for s in self.subscribers if not s.joined)
        self.tally.error("join:timeout", f"{missing} subscribers never saw the barrier frame")

    async def wait_complete(self, deadline: float) -> None:
        targets = self.targets
        streams = [s.stream for s in self.subscribers if s.stream is not None]
        while time.time() < deadline:
            if all(
                st.closed or st.room not in targets or st.complete(targets[st.room])
                for st in streams
            ):
                return
            await asyncio.sleep(POLL_INTERVAL)

    async def report_progress(self) -> None:
        while True:
            await asyncio.sleep(PROGRESS_INTERVAL)
            pubs = [s.publisher for s in self.publishers + self.subscribers if s.publisher]
            self.send(
                {
                    "ev": "progress",
                    "index": self.spec.index,
                    "connected": len(self.subscribers) + len(self.probes),
                    "failed": self.connect_failed,
                    "joined": sum(1 for s in self.subscribers if s.joined),
                    "deliveries": self.tally.deliveries,
                    "published": sum(p.sent for p in pubs),
                    "acked": sum(p.acked for p in pubs),
                    "errors": sum(self.tally.errors.values()),
                    "closed": sum(self.tally.closed.values()),
                }
            )

    async def close_all(self) -> None:
        self.tally.closing = True
        channels = [s.channel for s in self.publishers + self.subscribers] + self.probes
        try:
            async with asyncio.timeout(CLOSE_TIMEOUT):
                await asyncio.gather(*(ch.close() for ch in channels), return_exceptions=True)
        except TimeoutError:
            for ch in channels:
                ch.abort()
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        gc.unfreeze()

    # -- reports --------------------------------------------------------------------------

    def connected(self) -> Message:
        return {
            "ev": "connected",
            "index": self.spec.index,
            "connected": len(self.subscribers) + len(self.probes),
            "failed": self.connect_failed,
        }

    def result(self, aborted: bool = False) -> Message:
        tally = self.tally
        pubs = [s.publisher for s in self.publishers + self.subscribers if s.publisher]
        streams = [s.stream for s in self.subscribers if s.stream is not None]
        return {
            "ev": "result",
            "index": self.spec.index,
            "aborted": aborted,
            "connected": len(self.subscribers) + len(self.probes),
            "connect_failed": self.connect_failed,
            "connect_latency": self.connect_latency,
            "connect_first": self.connect_first,
            "connect_last": self.connect_last,
            "deliveries": tally.deliveries,
            "measured": tally.measured,
            "presence": tally.presence,
            "other": tally.other,
            "latency": tally.latency,
            "errors": dict(tally.errors),
            "samples": dict(tally.samples),
            "closed": dict(tally.closed),
            "integrity": integrity(streams, self.targets),
            "published": sum(p.sent for p in pubs),
            "published_measured": sum(p.sent_measured for p in pubs),
            "acked": sum(p.acked for p in pubs),
            "refused": sum(p.refused for p in pubs),
            "server_limit": max((p.server_limit for p in pubs if p.server_limit), default=None),
            "paced_to": min((p.paced_to for p in pubs if p.paced_to), default=None),
            "cpu": self.cpu,
            "wall": self.wall,
        }


def _raise_fd_limit() -> None:
    with contextlib.suppress(ValueError, OSError):
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft < hard:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def _loop_factory(name: str) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """``--loop``: uvloop's loop, or None for asyncio's own."""
    if name == "uvloop":
        import uvloop

        return uvloop.new_event_loop
    return None


def worker_main(spec: WorkerSpec, conn: Connection) -> None:
    """The entry point of a worker process."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C: the coordinator decides
    _raise_fd_limit()
    keep_heap_top()  # malloc.py: a socket read without a brk() pair
    try:
        with asyncio.Runner(loop_factory=_loop_factory(spec.config.loop)) as runner:
            runner.run(Worker(spec, conn).main())
    except BaseException as exc:
        with contextlib.suppress(Exception):
            conn.send({"ev": "fatal", "index": spec.index, "error": repr(exc)})
            conn.send({"ev": "closed", "index": spec.index})
