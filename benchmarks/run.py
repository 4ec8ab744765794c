"""Every benchmark in one run: roomcast against its peers, written to RESULTS.md.

Usage (from the repository root)::

    .venv/bin/python benchmarks/run.py [--rounds 3] [--subscribers 1000] [--duration 8]
        [--only roomcast,frame-once,websockets,...] [--idle-connections N]
        [--out benchmarks/RESULTS.md] [--json FILE] [--no-pin]

What it does, in order:

1. Prepares what the peers need: benchmarks/requirements.txt in this interpreter's
   environment, a side virtualenv with redis-py 7 for broadcaster's Redis variant
   (README.md, "Known problems"), ``npm ci`` for the Node.js peer, and a private
   ``redis-server`` on a free loopback port. A peer whose needs cannot be met is left
   out and RESULTS.md says why.
2. Pins the server to one CPU and the load client to another (``taskset -c``; the
   server's worker processes and redis-server share the server's CPU; the client runs
   ``roomcast bench --processes 1``), or says why it could not.
3. Window 16 (the peak): every WebSocket, Redis and SSE case, ``--rounds`` times,
   interleaved (round 2 rotates the order, ...), each trial on a freshly started server
   driven by ``roomcast bench`` with ``--server-pid`` and ``--json``.
4. One publish at a time and fixed rates, interleaved the same way: window 1 for every
   WebSocket and SSE case; a common fixed rate for every WebSocket case, half of
   ``websockets.broadcast()``'s window-16 peak from step 3 (``--common-rate`` sets it);
   roomcast at half of its own window-16 peak; roomcast and the limit at a light rate;
   roomcast's SSE and WebSocket paths and sse-starlette at one fixed rate (``--sse-rate``).
   Where a C compiler is there, the same with the compiled load client (compiled_reader.py)
   instead of ``roomcast bench``: window 16 (in step 3) and window 1 for every
   single-process WebSocket case it speaks and roomcast's SSE, a common fixed rate (half
   of ``websockets.broadcast()``'s peak there), roomcast at half of its own peak there,
   and the light rate. Then ``--pair-rounds`` more rounds of roomcast and the limit alone
   at window 1 and at the common fixed rate (both load clients): the targets compare
   their CPU per delivery within 10%, about as much as one run moves here.
5. Holds idle connections (WebSockets; SSE streams for roomcast) on fresh servers and
   reads their RSS (``--idle-rounds`` times, default once).
6. Writes RESULTS.md (results.py renders it) and every trial's JSON.

Absolute numbers move by tens of percent between runs on a shared 2-core machine;
the ratios between servers measured in the same run are what to compare.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from cases import CASES, LIMIT, ROOT, SIDE_VENV, Case, environment_for
from compiled_reader import build, drives, reader_command, run_trial
from results import cpu_us_per_delivery, render
from roomcast.bench.procfs import process_tree

LIGHT_CASES = ("roomcast", LIMIT)
"""Also measured at a fixed light rate (--light-rate): the baseline of roomcast's
latency at half of its own peak, and the limit's for reference."""
COMMON_RATE_BASE = "websockets"
"""The common fixed rate is half of this case's window-16 peak."""
CLIENT_PROCESSES = 1
"""``roomcast bench --processes``: one client process, on the client's one CPU."""
SERVER_START_TIMEOUT = 30.0
STOP_TIMEOUT = 10.0
DEFAULT_OUT = ROOT / "benchmarks" / "RESULTS.md"
DEFAULT_JSON = ROOT / "benchmarks" / "results.json"


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


# -- pinning ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Pinning:
    """Where the server and the load client run (``taskset -c`` CPU lists)."""

    server_cpus: str | None
    client_cpus: str | None
    why_not: str | None = None
    client_processes: int = CLIENT_PROCESSES

    @property
    def pinned(self) -> bool:
        return self.server_cpus is not None and self.client_cpus is not None

    def server(self, command: Sequence[str]) -> list[str]:
        """``command`` run on the server's CPU (its children inherit it)."""
        return ["taskset", "-c", self.server_cpus, *command] if self.server_cpus else [*command]

    def client(self, command: Sequence[str]) -> list[str]:
        return ["taskset", "-c", self.client_cpus, *command] if self.client_cpus else [*command]

    def as_json(self) -> dict[str, Any]:
        return asdict(self) | {"pinned": self.pinned}


def pinning(disabled: bool) -> Pinning:
    """The server on the first CPU this process may use, the client on the second; no
    pinning (and why) without taskset, without a second CPU, or with --no-pin."""
    if disabled:
        return Pinning(None, None, "--no-pin")
    if not shutil.which("taskset"):
        return Pinning(None, None, "taskset is not installed (util-linux)")
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        return Pinning(None, None, f"only {len(cpus)} CPU available to this process")
    return Pinning(str(cpus[0]), str(cpus[1]))


def affinity(pid: int) -> list[int]:
    """The CPUs ``pid`` and its descendants may run on (their union; [] if gone)."""
    cpus: set[int] = set()
    for member in process_tree(pid):
        with contextlib.suppress(OSError):
            cpus |= os.sched_getaffinity(member)
    return sorted(cpus)


# -- preparing what the peers need -------------------------------------------------


def _pip(python: str, *args: str) -> bool:
    cmd = [python, "-m", "pip", "install", "-q", "--disable-pip-version-check", *args]
    return subprocess.run(cmd, check=False).returncode == 0


def _imports(python: str, module: str) -> bool:
    if not Path(python).exists():
        return False
    return subprocess.run([python, "-c", f"import {module}"], capture_output=True).returncode == 0


def prepare(skip_install: bool) -> tuple[set[str], dict[str, str]]:
    """What is available (``needs`` names) and why the rest is not."""
    have: set[str] = set()
    why: dict[str, str] = {}
    py = sys.executable
    if not skip_install and not (_imports(py, "broadcaster") and _imports(py, "socketio")):
        log("installing benchmarks/requirements.txt")
        _pip(py, "-r", str(ROOT / "benchmarks" / "requirements.txt"))
    for need, module in (("broadcaster", "broadcaster"), ("socketio", "socketio")):
        if _imports(py, module):
            have.add(need)
        else:
            why[need] = f"`import {module}` fails (pip install -r benchmarks/requirements.txt)"
    side_py = str(SIDE_VENV / "bin" / "python")
    if not skip_install and not _imports(side_py, "broadcaster"):
        log(f"creating {SIDE_VENV.relative_to(ROOT)} (broadcaster with redis-py 7)")
        subprocess.run([py, "-m", "venv", str(SIDE_VENV)], check=False)
        _pip(side_py, "broadcaster[redis]==0.3.1", "redis>=7.4,<8", "fastapi", "uvicorn[standard]")
    if _imports(side_py, "broadcaster"):
        have.add("side-venv")
    else:
        why["side-venv"] = "could not create the redis-py 7 virtualenv for broadcaster"
    node_dir = ROOT / "benchmarks" / "peers" / "node-ws"
    if shutil.which("node") and shutil.which("npm"):
        if not (node_dir / "node_modules" / "ws").is_dir() and not skip_install:
            log("npm ci (Node.js ws peer)")
            subprocess.run(["npm", "ci", "--silent", "--prefix", str(node_dir)], check=False)
        if (node_dir / "node_modules" / "ws").is_dir():
            have.add("node")
        else:
            why["node"] = "`npm ci --prefix benchmarks/peers/node-ws` failed"
    else:
        why["node"] = "node and npm are not on PATH"
    if shutil.which("redis-server"):
        have.add("redis")
    else:
        why["redis"] = "redis-server is not installed (apt-get install redis-server)"
    return have, why


@contextlib.contextmanager
def redis_server(tmp: Path, pins: Pinning) -> Iterator[str]:
    """A private redis-server on the server's CPU (it is part of the server side)."""
    port = free_port()
    proc = subprocess.Popen(
        pins.server(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                     "--appendonly", "no", "--dir", str(tmp)]),
        stdout=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        wait_for_port(port, proc)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.terminate()
        proc.wait(STOP_TIMEOUT)


# -- one trial ---------------------------------------------------------------------


def stop_group(proc: subprocess.Popen[bytes], timeout: float = STOP_TIMEOUT) -> None:
    """SIGTERM the process group ``proc`` leads (a server and its workers); SIGKILL
    it after ``timeout`` seconds."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def wait_for_port(port: int, proc: subprocess.Popen[bytes], health: str | None = None) -> None:
    deadline = time.monotonic() + SERVER_START_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode} while starting")
        try:
            if health:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}{health}", timeout=1):
                    return
            else:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"server did not listen on {port} within {SERVER_START_TIMEOUT:g} s")


@dataclass(frozen=True)
class Context:
    redis_url: str
    tmp: Path
    pins: Pinning
    reader: Path | None = None
    """The compiled load client (compiled_reader.py), for the ``-reader`` scenarios."""


READER = "-reader"
"""The suffix of a scenario driven by the compiled load client (compiled_reader.py)
instead of ``roomcast bench``."""
PAIRED = ("w1", "fixed", "w1" + READER, "fixed" + READER)
"""The scenarios whose roomcast and limit rows get ``--pair-rounds`` more rounds."""


@contextlib.contextmanager
def started(case: Case, ctx: Context, logs: list[Path]) -> Iterator[tuple[int, int]]:
    """Start ``case``'s server on the server's CPU; yield (port, pid); stop it and every
    child. The path of its log is appended to ``logs``."""
    port = free_port()
    work = Path(tempfile.mkdtemp(dir=ctx.tmp, prefix=f"{case.key}-"))
    logs.append(work / "server.log")
    command = [part.format(port=port, redis=ctx.redis_url) for part in case.command]
    errors = (work / "server.log").open("wb")
    proc = subprocess.Popen(
        ctx.pins.server(command), env=environment_for(case, port, ctx.redis_url, str(work)),
        cwd=str(work), stdout=errors, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    try:
        wait_for_port(port, proc, case.health)
        if case.workers > 1:
            time.sleep(2.0)  # every worker has its app started, not only the first
        yield port, proc.pid
    finally:
        stop_group(proc)
        errors.close()


def bench(
    case: Case, port: int, pid: int, args: list[str], out: Path, pins: Pinning
) -> dict[str, Any]:
    command = [
        sys.executable, "-m", "roomcast.bench", case.scenario,
        "--url", f"http://127.0.0.1:{port}", "--protocol", case.protocol,
        "--server-pid", str(pid), "--json", str(out),
        "--processes", str(pins.client_processes), *case.bench_args, *args,
    ]  # fmt: skip
    done = subprocess.run(pins.client(command), capture_output=True, text=True, check=False)
    if not out.exists():
        return {"ok": False, "exit_code": done.returncode, "failure": done.stderr[-2000:]}
    report: dict[str, Any] = json.loads(out.read_text())
    report.pop("latency_histogram_us", None)  # the percentiles stay; keeps the JSON small
    return report


def trial(case: Case, scenario: str, args: list[str], ctx: Context) -> dict[str, Any]:
    out = ctx.tmp / f"{case.key}-{time.monotonic_ns()}.json"
    logs: list[Path] = []
    began = time.monotonic()
    server_cpus: list[int] = []
    try:
        with started(case, ctx, logs) as (port, pid):
            server_cpus = affinity(pid)
            if scenario.endswith(READER) and ctx.reader is not None:
                command = reader_command(ctx.reader, f"ws://127.0.0.1:{port}/ws", case.protocol,
                                         pid, args, sse=case.scenario == "sse")  # fmt: skip
                report = run_trial(command, ctx.pins.client)
            else:
                report = bench(case, port, pid, args, out, ctx.pins)
    except RuntimeError as exc:
        report = {"ok": False, "failure": str(exc)}
    if not report.get("ok") and logs and logs[0].exists():  # what the server said, kept
        report["server_log_tail"] = logs[0].read_text(errors="replace")[-3000:]
    report["pinning"] = {
        "server_cpus": server_cpus,
        "client_cpus": ctx.pins.client_cpus,
        "client_processes": ctx.pins.client_processes,
    }
    report["cpu_us_per_delivery"] = cpu_us_per_delivery(report)
    report["trial_seconds"] = round(time.monotonic() - began, 1)
    rate = report.get("deliveries_per_s")
    rss = report.get("rss_per_connection")
    per = report["cpu_us_per_delivery"]
    if rate:
        shown = f"{rate:,.0f} deliveries/s" + (f", {per:.1f} us CPU/delivery" if per else "")
        shown += f", p99 {report.get('latency_ms', {}).get('p99', 0):,.1f} ms"
        shown += f", client CPU {report.get('client_cpu') or 0:.2f}"
    else:
        shown = f"{rss or 0:,.0f} B/conn"
    log(f"  {scenario} {case.key}: {shown}, exit {report.get('exit_code')}"
        + (f" ({report.get('failure')})" if report.get("failure") else ""))  # fmt: skip
    return report


# -- the run -------------------------------------------------------------------------


def fd_limit() -> int:
    import resource

    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


Job = tuple[str, Case, list[str]]
"""(scenario, case, bench arguments)."""


def rotated(jobs: list[Job], r: int) -> list[Job]:
    if not jobs:
        return jobs
    k = r % len(jobs)
    return jobs[k:] + jobs[:k]


def run_rounds(
    jobs: list[Job], rounds: int, ctx: Context, results: dict[str, dict[str, list[Any]]]
) -> None:
    """Every job ``rounds`` times, interleaved; trials go to ``results[scenario][key]``."""
    for r in range(rounds):
        log(f"round {r + 1} of {rounds}")
        for scenario, case, args in rotated(jobs, r):
            report = trial(case, scenario, args, ctx)
            results.setdefault(scenario, {}).setdefault(case.key, []).append(report)


def paired(jobs: list[Job]) -> list[Job]:
    """The jobs of ``--pair-rounds``: roomcast's and the limit's in :data:`PAIRED`."""
    return [j for j in jobs if j[0] in PAIRED and j[1].key in ("roomcast", LIMIT)]


def peak(results: dict[str, dict[str, list[Any]]], key: str, scenario: str = "w16") -> float:
    """The median window-16 deliveries/s of ``key`` (0: not measured)."""
    return _median([t["deliveries_per_s"] for t in results.get(scenario, {}).get(key, [])
                    if t.get("deliveries_per_s")])  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--subscribers", type=int, default=1000)
    parser.add_argument("--duration", type=float, default=8.0)
    parser.add_argument("--payload-bytes", type=int, default=100)
    parser.add_argument("--idle-connections", type=int, help="default: 20000, or the fd limit")
    parser.add_argument("--idle-duration", type=float, default=10.0)
    parser.add_argument(
        "--idle-rounds", type=int, default=1,
        help="rounds of the idle cases (default 1: RSS per connection varied by ±0%% over "
        "3 rounds, and each idle trial takes a minute or more)",
    )  # fmt: skip
    parser.add_argument(
        "--pair-rounds", type=int, default=4,
        help="more rounds of roomcast and the limit alone at window 1 and at the common "
        "fixed rate (both load clients), the rows the 10%% CPU targets compare (default 4: "
        "a single run of either moves by up to ±10%% on this machine)",
    )  # fmt: skip
    parser.add_argument(
        "--light-rate", type=float, default=10.0,
        help="publishes/s (default 10: light for the one client process too)",
    )  # fmt: skip
    parser.add_argument(
        "--common-rate", type=float,
        help="the fixed rate every WebSocket server gets, publishes/s (default: half of "
        "websockets.broadcast()'s window-16 peak in this run)",
    )  # fmt: skip
    parser.add_argument(
        "--sse-rate", type=float, default=40.0,
        help="publishes/s at which roomcast's SSE and WebSocket paths (and sse-starlette) "
        "are compared (default 40: under what the one client core reads unbatched)",
    )  # fmt: skip
    keys = ", ".join(c.key for c in CASES)
    parser.add_argument("--only", help=f"comma-separated case keys: {keys}")
    parser.add_argument("--no-pin", action="store_true", help="do not pin with taskset")
    parser.add_argument(
        "--no-reader", action="store_true",
        help="leave out the scenarios driven by the compiled load client (benchmarks/reader)",
    )  # fmt: skip
    parser.add_argument("--skip-install", action="store_true")
    parser.add_argument(
        "--render", action="store_true",
        help="run nothing: write --out again from the trials in --json (after a change to "
        "how RESULTS.md is written)",
    )  # fmt: skip
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument(
        "--json", type=Path,
        help="every trial's JSON (default: benchmarks/results.json with the default --out, "
        "else --out with a .json suffix)",
    )  # fmt: skip
    opts = parser.parse_args()
    if opts.json is None:
        opts.json = (
            DEFAULT_JSON if opts.out.resolve() == DEFAULT_OUT else opts.out.with_suffix(".json")
        )
    if opts.render:
        return rerender(opts.json, opts.out)
    only = set(opts.only.split(",")) if opts.only else None
    if only and (unknown := only - {c.key for c in CASES}):
        parser.error(f"--only: unknown case {', '.join(sorted(unknown))} (known: {keys})")

    have, why = prepare(opts.skip_install)
    pins = pinning(opts.no_pin)
    log(f"pinned: server on CPU {pins.server_cpus}, client on CPU {pins.client_cpus}"
        if pins.pinned else f"NOT pinned: {pins.why_not}")  # fmt: skip
    cases = [c for c in CASES if only is None or c.key in only]
    left_out = {c.key: "; ".join(why[n] for n in sorted(c.needs - have)) for c in cases
                if c.needs - have}  # fmt: skip
    runnable = [c for c in cases if c.key not in left_out]
    by_group = {
        g: [c for c in runnable if c.group == g] for g in ("fanout", "fanout2", "sse", "idle")
    }
    idle_n = opts.idle_connections or min(20_000, fd_limit() - 500)
    common = [
        "--subscribers", str(opts.subscribers), "--duration", str(opts.duration),
        "--payload-bytes", str(opts.payload_bytes), "--warmup", "1", "--grace", "5",
    ]  # fmt: skip
    idle_args = ["--subscribers", str(idle_n), "--duration", str(opts.idle_duration),
                 "--concurrency", "200", "--setup-timeout", "180"]  # fmt: skip
    started_at = datetime.datetime.now(datetime.UTC)
    began = time.monotonic()
    phases: dict[str, float] = {}
    results: dict[str, dict[str, list[Any]]] = {}
    rates: dict[str, Any] = {"light": opts.light_rate}
    with tempfile.TemporaryDirectory(prefix="roomcast-bench-") as tmp_name:
        tmp = Path(tmp_name)
        redis = redis_server(tmp, pins) if "redis" in have else contextlib.nullcontext("")
        reader, rates["reader_why_not"] = (None, "--no-reader") if opts.no_reader else build(tmp)
        if reader is None:
            log(f"no compiled reader: {rates['reader_why_not']}")
        with redis as redis_url:
            ctx = Context(redis_url, tmp, pins, reader)
            mark = time.monotonic()
            w16 = [*by_group["fanout"], *by_group["fanout2"], *by_group["sse"]]
            jobs16: list[Job] = [("w16", c, [*common, "--window", "16"]) for c in w16]
            readable = [c for c in [*by_group["fanout"], *by_group["sse"]]
                        if reader and drives(c.protocol, c.scenario, c.workers)]  # fmt: skip
            jobs16 += [("w16" + READER, c, [*common, "--window", "16"]) for c in readable]
            log(f"window 16 (peak): {len(jobs16)} jobs ({len(readable)} by the compiled client)")
            run_rounds(jobs16, opts.rounds, ctx, results)
            phases["w16"] = time.monotonic() - mark

            mark = time.monotonic()
            jobs: list[Job] = [("w1", c, [*common, "--window", "1"])
                               for c in [*by_group["fanout"], *by_group["sse"]]]  # fmt: skip
            base = peak(results, COMMON_RATE_BASE)
            fixed = opts.common_rate or (base / 2 / opts.subscribers if base else 0.0)
            if fixed:
                rates["fixed"] = round(fixed, 2)
                rates["fixed_from"] = "--common-rate" if opts.common_rate else COMMON_RATE_BASE
                jobs += [("fixed", c, [*common, "--rate", f"{fixed:.2f}"])
                         for c in by_group["fanout"]]  # fmt: skip
            elif by_group["fanout"]:
                rates["fixed_why_not"] = (
                    "websockets.broadcast() has no window-16 peak in this run "
                    "(add websockets to --only, or give --common-rate)"
                )
            own = peak(results, "roomcast")
            roomcast = next((c for c in by_group["fanout"] if c.key == "roomcast"), None)
            if own and roomcast:
                rates["half"] = round(own / 2 / opts.subscribers, 2)
                jobs.append(("half", roomcast, [*common, "--rate", f"{rates['half']:.2f}"]))
            jobs += [("light", c, [*common, "--rate", f"{opts.light_rate:g}"])
                     for c in by_group["fanout"] if c.key in LIGHT_CASES]  # fmt: skip
            if by_group["sse"] and opts.sse_rate > 0:
                rates["sse_fixed"] = opts.sse_rate
                jobs += [("sse-fixed", c, [*common, "--rate", f"{opts.sse_rate:g}"])
                         for c in [roomcast, *by_group["sse"]] if c is not None]  # fmt: skip
            jobs += [("w1" + READER, c, [*common, "--window", "1"]) for c in readable]
            base_read = peak(results, COMMON_RATE_BASE, "w16" + READER)
            if base_read and reader:
                rates["fixed_reader"] = round(base_read / 2 / opts.subscribers, 2)
                jobs += [("fixed" + READER, c, [*common, "--rate", f"{rates['fixed_reader']:.2f}"])
                         for c in readable if c.scenario == "fanout"]  # fmt: skip
            own_read = peak(results, "roomcast", "w16" + READER)
            if own_read and roomcast and reader:
                rates["half_reader"] = round(own_read / 2 / opts.subscribers, 2)
                jobs.append(("half" + READER, roomcast,
                             [*common, "--rate", f"{rates['half_reader']:.2f}"]))  # fmt: skip
                jobs += [("light" + READER, c, [*common, "--rate", f"{opts.light_rate:g}"])
                         for c in readable if c.key in LIGHT_CASES]  # fmt: skip
            log(f"window 1 and fixed rates ({rates}): {len(jobs)} jobs")
            run_rounds(jobs, opts.rounds, ctx, results)
            pairs = paired(jobs)
            if pairs and opts.pair_rounds > 0:
                log(f"roomcast and the limit, {opts.pair_rounds} more rounds: {len(pairs)} jobs")
                run_rounds(pairs, opts.pair_rounds, ctx, results)
            phases["w1_and_rates"] = time.monotonic() - mark

            mark = time.monotonic()
            if by_group["idle"]:
                log(f"idle: {idle_n:,} connections")
                run_rounds([("idle", c, idle_args) for c in by_group["idle"]], opts.idle_rounds,
                           ctx, results)  # fmt: skip
            phases["idle"] = time.monotonic() - mark
    elapsed = time.monotonic() - began
    document = {
        "started_at": started_at.isoformat(timespec="seconds"),
        "elapsed_s": round(elapsed),
        "phase_seconds": {k: round(v) for k, v in phases.items()},
        "commit": _commit(),
        "options": {k: str(v) for k, v in vars(opts).items()},
        "pinning": pins.as_json(),
        "idle_connections": idle_n,
        "fd_limit": fd_limit(),
        "left_out": left_out,
        "rates": rates,
        "results": results,
    }
    opts.json.write_text(json.dumps(document, indent=1) + "\n")
    opts.out.write_text(render(document, list(cases)))
    log(f"wrote {opts.out} and {opts.json} after {elapsed / 60:.1f} minutes")
    return 0


def rerender(source: Path, out: Path) -> int:
    """``--render``: RESULTS.md from a run's JSON, with the cases that run chose."""
    document = json.loads(source.read_text())
    only = document.get("options", {}).get("only")
    keys = None if only in (None, "None") else set(only.split(","))
    out.write_text(render(document, [c for c in CASES if keys is None or c.key in keys]))
    log(f"wrote {out} from {source}")
    return 0


def _commit() -> str:
    """The checked-out commit, ``+`` when the work tree has changes ("" outside git)."""
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT,
                          capture_output=True, text=True, check=False).stdout.strip()  # fmt: skip
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                           capture_output=True, text=True, check=False).stdout.strip()  # fmt: skip
    return head + ("+" if head and dirty else "")


def _median(values: list[float]) -> float:
    values = sorted(values)
    if not values:
        return 0.0
    mid = len(values) // 2
    return values[mid] if len(values) % 2 else (values[mid - 1] + values[mid]) / 2


if __name__ == "__main__":
    raise SystemExit(main())
