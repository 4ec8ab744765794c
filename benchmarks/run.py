"""Every benchmark in one run: roomcast against its peers, written to RESULTS.md.

Usage (from the repository root)::

    .venv/bin/python benchmarks/run.py [--rounds 3] [--subscribers 1000] [--duration 8]
        [--only roomcast,tutorial,...] [--idle-connections N] [--out benchmarks/RESULTS.md]

What it does, in order:

1. Prepares what the peers need: benchmarks/requirements.txt in this interpreter's
   environment, a side virtualenv with redis-py 7 for broadcaster's Redis variant
   (README.md, "Known problems"), ``npm ci`` for the Node.js peer, and a private
   ``redis-server`` on a free loopback port. A peer whose needs cannot be met is left
   out and RESULTS.md says why.
2. Runs every case (cases.py) ``--rounds`` times, interleaved (round 1: every case,
   round 2: every case in a rotated order, ...), each trial on a freshly started server
   process driven by ``roomcast bench`` with ``--server-pid`` and ``--json``.
3. Measures roomcast's latency at half of the peak rate it reached in step 2, and
   roomcast's, the tutorial's and ``websockets``' at one light fixed rate.
4. Holds idle connections on a fresh roomcast and fresh peers and reads their RSS.
5. Writes RESULTS.md (results.py renders it) and every trial's JSON to results.json.

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
from collections.abc import Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from cases import CASES, ROOT, SIDE_VENV, Case, environment_for
from results import render

LIGHT_CASES = ("roomcast", "websockets", "tutorial")
"""Also measured at a fixed light rate (--light-rate), for latency side by side."""
SERVER_START_TIMEOUT = 30.0
STOP_TIMEOUT = 10.0


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


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
def redis_server(tmp: Path) -> Iterator[str]:
    port = free_port()
    proc = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "no", "--dir", str(tmp)],
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


@contextlib.contextmanager
def started(case: Case, redis_url: str, tmp: Path, logs: list[Path]) -> Iterator[tuple[int, int]]:
    """Start ``case``'s server; yield (port, pid); stop it and every child. The path of
    its log is appended to ``logs``."""
    port = free_port()
    work = Path(tempfile.mkdtemp(dir=tmp, prefix=f"{case.key}-"))
    logs.append(work / "server.log")
    command = [part.format(port=port, redis=redis_url) for part in case.command]
    errors = (work / "server.log").open("wb")
    proc = subprocess.Popen(
        command, env=environment_for(case, port, redis_url, str(work)), cwd=str(work),
        stdout=errors, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    try:
        wait_for_port(port, proc, case.health)
        if case.workers > 1:
            time.sleep(2.0)  # every worker has its app started, not only the first
        yield port, proc.pid
    finally:
        stop_group(proc)
        errors.close()


def bench(case: Case, port: int, pid: int, args: list[str], out: Path) -> dict[str, Any]:
    command = [
        sys.executable, "-m", "roomcast.bench", case.scenario,
        "--url", f"http://127.0.0.1:{port}", "--protocol", case.protocol,
        "--server-pid", str(pid), "--json", str(out), *args,
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if not out.exists():
        return {"ok": False, "exit_code": done.returncode, "failure": done.stderr[-2000:]}
    report: dict[str, Any] = json.loads(out.read_text())
    report.pop("latency_histogram_us", None)  # the percentiles stay; keeps results.json small
    return report


def trial(case: Case, args: list[str], redis_url: str, tmp: Path) -> dict[str, Any]:
    out = tmp / f"{case.key}-{time.monotonic_ns()}.json"
    logs: list[Path] = []
    try:
        with started(case, redis_url, tmp, logs) as (port, pid):
            report = bench(case, port, pid, args, out)
    except RuntimeError as exc:
        report = {"ok": False, "failure": str(exc)}
    if not report.get("ok") and logs and logs[0].exists():  # what the server said, kept
        report["server_log_tail"] = logs[0].read_text(errors="replace")[-3000:]
    summary = report.get("deliveries_per_s")
    rss = report.get("rss_per_connection")
    shown = f"{summary:,.0f} deliveries/s" if summary else f"{rss or 0:,.0f} B/conn"
    log(f"  {case.key}: {shown}, exit {report.get('exit_code')}"
        + (f" ({report.get('failure')})" if report.get("failure") else ""))  # fmt: skip
    return report


# -- the run -------------------------------------------------------------------------


def fd_limit() -> int:
    import resource

    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--subscribers", type=int, default=1000)
    parser.add_argument("--duration", type=float, default=8.0)
    parser.add_argument("--payload-bytes", type=int, default=100)
    parser.add_argument("--idle-connections", type=int, help="default: 20000, or the fd limit")
    parser.add_argument("--idle-duration", type=float, default=10.0)
    parser.add_argument("--light-rate", type=float, default=30.0, help="publishes/s")
    parser.add_argument("--only", help="comma-separated case keys (cases.py)")
    parser.add_argument("--skip-install", action="store_true")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "RESULTS.md")
    parser.add_argument("--json", type=Path, default=ROOT / "benchmarks" / "results.json")
    opts = parser.parse_args()

    have, why = prepare(opts.skip_install)
    only = set(opts.only.split(",")) if opts.only else None
    cases = [c for c in CASES if only is None or c.key in only]
    left_out = {c.key: "; ".join(why[n] for n in sorted(c.needs - have)) for c in cases
                if c.needs - have}  # fmt: skip
    runnable = [c for c in cases if c.key not in left_out]
    idle_n = opts.idle_connections or min(20_000, fd_limit() - 500)
    common = [
        "--subscribers", str(opts.subscribers), "--duration", str(opts.duration),
        "--payload-bytes", str(opts.payload_bytes), "--warmup", "1", "--grace", "5",
    ]  # fmt: skip
    per_scenario = {
        "fanout": common,
        "sse": common,
        "idle": ["--subscribers", str(idle_n), "--duration", str(opts.idle_duration),
                 "--concurrency", "200", "--setup-timeout", "180"],
    }  # fmt: skip
    started_at = datetime.datetime.now(datetime.UTC)
    trials: dict[str, list[dict[str, Any]]] = {c.key: [] for c in runnable}
    half: list[dict[str, Any]] = []
    light: dict[str, list[dict[str, Any]]] = {}
    with tempfile.TemporaryDirectory(prefix="roomcast-bench-") as tmp_name:
        tmp = Path(tmp_name)
        redis = redis_server(tmp) if "redis" in have else contextlib.nullcontext("")
        with redis as redis_url:
            for r in range(opts.rounds):
                order = runnable[r % len(runnable) :] + runnable[: r % len(runnable)]
                log(f"round {r + 1} of {opts.rounds}")
                for case in order:
                    trials[case.key].append(
                        trial(case, per_scenario[case.scenario], redis_url, tmp)
                    )
            peak = _median([t.get("deliveries_per_s") or 0 for t in trials.get("roomcast", [])])
            if peak:
                rate = peak / 2 / opts.subscribers
                log(f"latency at half of roomcast's peak: {rate:.1f} publishes/s")
                base = next(c for c in CASES if c.key == "roomcast")
                args = [*common, "--rate", f"{rate:.2f}"]
                half = [trial(base, args, redis_url, tmp) for _ in range(opts.rounds)]
            light_cases = [c for c in runnable if c.key in LIGHT_CASES]
            if light_cases:
                log(f"latency at a light load: {opts.light_rate:g} publishes/s")
                args = [*common, "--rate", f"{opts.light_rate:g}"]
                for _ in range(opts.rounds):
                    for case in light_cases:
                        light.setdefault(case.key, []).append(trial(case, args, redis_url, tmp))
    document = {
        "started_at": started_at.isoformat(timespec="seconds"),
        "commit": _commit(),
        "options": {k: str(v) for k, v in vars(opts).items()},
        "idle_connections": idle_n,
        "fd_limit": fd_limit(),
        "left_out": left_out,
        "trials": trials,
        "half_peak": half,
        "light": light,
        "light_rate": opts.light_rate,
    }
    opts.json.write_text(json.dumps(document, indent=1) + "\n")
    opts.out.write_text(render(document, [c for c in cases]))
    log(f"wrote {opts.out} and {opts.json}")
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
