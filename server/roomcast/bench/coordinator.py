"""The coordinator: splits a run over worker processes and steps them through it.

It runs in the ``roomcast bench`` process, without an event loop: it starts the workers
(:mod:`.worker`, ``spawn`` so each starts clean), then waits on their pipes phase by
phase, each phase under its own deadline, feeding progress snapshots to a callback.
Between phases it does what needs every worker's answer: it opens the measured window
for all of them at once (wall-clock times), and it takes the highest acknowledged offset
of each room over all publishers as the room's *target* for the loss check. With
``--server-pid`` it reads the server's CPU time over the measured window and its RSS
before the first connection and at the end of the window.

A phase that misses its deadline, a worker that fails, and Ctrl-C all end the same way:
``abort`` to every worker, a few seconds to collect what they have, and any worker still
running is terminated. :meth:`Coordinator.run` always returns an :class:`Outcome`.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from multiprocessing.process import BaseProcess
from typing import Any

from .config import BenchConfig
from .procfs import tree_cpu_seconds, tree_rss_bytes
from .worker import WorkerSpec, hard_deadline, worker_main

__all__ = ["Coordinator", "Outcome", "PhaseError", "plan", "shares"]

START_SLACK = 30.0
"""Seconds a worker process may take to start, on top of a phase's own deadline."""
PHASE_SLACK = 15.0
GO_LEAD = 0.3
"""Seconds between sending ``go`` and the start of publishing."""
ABORT_WAIT = 5.0
Message = dict[str, Any]


class PhaseError(Exception):
    """A phase of the run could not be completed."""


def shares(total: int, parts: int) -> list[int]:
    """``total`` split into ``parts`` near-equal integers."""
    return [total // parts + (1 if i < total % parts else 0) for i in range(parts)]


def plan(cfg: BenchConfig) -> list[WorkerSpec]:
    """Each worker's share of the connections. In ``rooms`` a room's members may be
    spread over processes; the ``fanout`` and ``sse`` publisher runs in worker 0."""
    counts = shares(cfg.connections, cfg.processes)
    if cfg.scenario != "rooms":
        return [
            WorkerSpec(i, cfg, ((cfg.room, n),), publisher=(i == 0 and cfg.publishes))
            for i, n in enumerate(counts)
        ]
    members = [room for room in cfg.room_names() for _ in range(cfg.members)]
    specs = []
    start = 0
    for i, n in enumerate(counts):
        mine: dict[str, int] = {}
        for room in members[start : start + n]:
            mine[room] = mine.get(room, 0) + 1
        start += n
        specs.append(WorkerSpec(i, cfg, tuple(mine.items()), publisher=False, members=True))
    return specs


@dataclass
class Outcome:
    """Everything the workers and the server readings told, for :mod:`.report`."""

    config: BenchConfig
    results: list[Message] = field(default_factory=list)
    published: list[Message] = field(default_factory=list)
    joined: list[Message] = field(default_factory=list)
    targets: dict[str, int] = field(default_factory=dict)
    window: tuple[float, float] | None = None
    server_cpu: float | None = None
    rss_before: int | None = None
    rss_after: int | None = None
    connect_server_cpu: float | None = None
    """Server CPU seconds spent while the connections opened (--server-pid)."""
    interrupted: bool = False
    failure: str | None = None
    aborted_at: float | None = None
    clock_step: float | None = None
    """How far the wall clock moved against the monotonic clock from "go" to the end
    of the window, seconds (0 but for the clocks' rounding; set once the window ends)."""

    def measured_seconds(self) -> float:
        """How long the measured window was open (shorter if the run was cut off)."""
        if self.window is None:
            return 0.0
        start, stop = self.window
        if self.aborted_at is not None:
            stop = min(stop, self.aborted_at)
        return max(0.0, stop - start)


Progress = Callable[[str, dict[str, int]], None]


class Coordinator:
    def __init__(self, cfg: BenchConfig, progress: Progress | None = None) -> None:
        self.cfg = cfg
        self.on_progress = progress or (lambda phase, totals: None)
        self.specs = plan(cfg)
        self.conns: list[Connection] = []
        self.procs: list[BaseProcess] = []
        self.inbox: dict[str, dict[int, Message]] = {}
        self.snapshots: dict[int, Message] = {}
        self.phase = "starting"
        self.outcome = Outcome(cfg)

    # -- processes and pipes ------------------------------------------------------------

    def start(self) -> None:
        context = multiprocessing.get_context("spawn")
        for spec in self.specs:
            parent, child = context.Pipe()
            proc = context.Process(
                target=worker_main, args=(spec, child), name=f"bench-{spec.index}", daemon=True
            )
            proc.start()
            child.close()
            self.conns.append(parent)
            self.procs.append(proc)

    def broadcast(self, message: Message) -> None:
        for conn in self.conns:
            with contextlib.suppress(OSError, ValueError):
                conn.send(message)

    def _receive(self, timeout: float) -> None:
        live = [c for c in self.conns if not c.closed]
        if not live:
            raise PhaseError("every worker process is gone")
        for conn in wait(live, timeout):
            assert isinstance(conn, Connection)
            index = self.conns.index(conn)
            try:
                message: Message = conn.recv()
            except (EOFError, OSError):
                conn.close()
                if index not in self.inbox.get("closed", {}):
                    raise PhaseError(f"worker {index} exited unexpectedly") from None
                continue
            self._handle(index, message)

    def _handle(self, index: int, message: Message) -> None:
        event = message["ev"]
        if event == "progress":
            self.snapshots[index] = message
            self.on_progress(self.phase, self.totals())
        elif event == "fatal":
            raise PhaseError(f"worker {index}: {message['error']}")
        else:
            self.inbox.setdefault(event, {})[index] = message

    def totals(self) -> dict[str, int]:
        keys = ("connected", "failed", "joined", "deliveries", "published", "acked")
        totals = {key: sum(s.get(key, 0) for s in self.snapshots.values()) for key in keys}
        totals["errors"] = sum(s.get("errors", 0) for s in self.snapshots.values())
        totals["closed"] = sum(s.get("closed", 0) for s in self.snapshots.values())
        return totals

    def collect(self, event: str, timeout: float) -> list[Message]:
        """Wait until every worker has sent ``event``; the messages by worker."""
        deadline = time.monotonic() + timeout
        box = self.inbox.setdefault(event, {})
        while len(box) < len(self.conns):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                missing = sorted(set(range(len(self.conns))) - set(box))
                raise PhaseError(f"no {event!r} from worker(s) {missing} within {timeout:.0f}s")
            self._receive(min(remaining, 0.25))
        return [box[i] for i in range(len(self.conns))]

    def pump_until(self, wall: float) -> None:
        """Handle progress messages until ``wall`` (time.time())."""
        while (remaining := wall - time.time()) > 0:
            self._receive(min(remaining, 0.25))

    # -- the run ----------------------------------------------------------------------------

    def run(self) -> Outcome:
        outcome = self.outcome
        pid = self.cfg.server_pid
        if pid is not None:
            outcome.rss_before = tree_rss_bytes(pid)
        try:
            self.start()
            self._phases()
        except KeyboardInterrupt:
            outcome.interrupted = True
            self._abort()
        except PhaseError as exc:
            outcome.failure = str(exc)
            self._abort()
        finally:
            self._stop()
        return outcome

    def _phases(self) -> None:
        cfg, outcome = self.cfg, self.outcome
        self.phase = "connecting"
        cpu_before = tree_cpu_seconds(cfg.server_pid) if cfg.server_pid else None
        self.collect("connected", cfg.setup_timeout + START_SLACK)
        if cpu_before is not None and cfg.server_pid:
            cpu_after = tree_cpu_seconds(cfg.server_pid)
            if cpu_after is not None:
                outcome.connect_server_cpu = cpu_after - cpu_before
        if cfg.scenario == "connect":
            self.phase = "closing"
            outcome.results = self.collect("result", PHASE_SLACK)
            self.broadcast({"cmd": "close"})
            self.collect("closed", PHASE_SLACK)
            return
        self.phase = "joining"
        if cfg.barrier and cfg.publishes:
            self.broadcast({"cmd": "sync"})
        outcome.joined = self.collect("joined", cfg.setup_timeout + PHASE_SLACK)

        wall_now, mono_now = time.time(), time.monotonic()
        t_go = wall_now + GO_LEAD
        t_measure = t_go + cfg.warmup
        t_stop = t_measure + cfg.duration
        outcome.window = (t_measure, t_stop)
        self.broadcast({"cmd": "go", "t_go": t_go, "t_measure": t_measure, "t_stop": t_stop})
        if cfg.warmup:
            self.phase = "warmup"
            self.pump_until(t_measure)
        self.phase = "measuring" if cfg.publishes else "holding"
        cpu_start = tree_cpu_seconds(cfg.server_pid) if cfg.server_pid else None
        self.pump_until(t_stop)
        # The workers schedule on the wall clock (one clock for every process): a step
        # of it moves their publishes and latencies, and the report says so.
        outcome.clock_step = (time.time() - wall_now) - (time.monotonic() - mono_now)
        if cfg.server_pid:
            cpu_end = tree_cpu_seconds(cfg.server_pid)
            if cpu_start is not None and cpu_end is not None and cfg.duration > 0:
                outcome.server_cpu = (cpu_end - cpu_start) / cfg.duration
            outcome.rss_after = tree_rss_bytes(cfg.server_pid)

        self.phase = "draining"
        outcome.published = self.collect("published", cfg.grace + PHASE_SLACK)
        targets: dict[str, int] = {}
        for message in outcome.published:
            for room, offset in message["acked"].items():
                targets[room] = max(targets.get(room, 0), offset)
        outcome.targets = targets
        self.broadcast({"cmd": "targets", "targets": targets})
        outcome.results = self.collect("result", cfg.grace + PHASE_SLACK)
        self.phase = "closing"
        self.broadcast({"cmd": "close"})
        self.collect("closed", PHASE_SLACK)

    def _abort(self) -> None:
        """Tell every worker to stop; keep whatever results arrive in time."""
        self.phase = "aborting"
        self.outcome.aborted_at = time.time()
        self.broadcast({"cmd": "abort"})
        deadline = time.monotonic() + ABORT_WAIT
        closed = self.inbox.setdefault("closed", {})
        with contextlib.suppress(KeyboardInterrupt):
            while len(closed) < len(self.conns) and time.monotonic() < deadline:
                if all(conn.closed for conn in self.conns):
                    break
                with contextlib.suppress(PhaseError):
                    self._receive(0.25)
        box = self.inbox.get("result", {})
        self.outcome.results = [box[i] for i in sorted(box)]

    def _stop(self) -> None:
        deadline = time.monotonic() + ABORT_WAIT
        for proc in self.procs:
            proc.join(timeout=max(0.0, deadline - time.monotonic()))
            if proc.is_alive():
                proc.terminate()
                proc.join(2)
            if proc.is_alive():
                proc.kill()
                proc.join(2)
        for conn in self.conns:
            conn.close()


def overall_deadline(cfg: BenchConfig) -> float:
    """The longest a run can take, start to end (the workers' own hard deadline)."""
    return hard_deadline(cfg) + START_SLACK
