"""The compiled load client (benchmarks/reader/reader.c): build it, run a trial with it.

On this 2-core machine the load client has one core, and ``roomcast bench`` (Python)
spends about 16 µs of it per frame it reads one at a time, and more per publish: at
window 16, and at half of roomcast's peak, its core is saturated, so the deliveries/s
it reports are a lower bound and its p99 holds its own queue. The reader does the same
work in C: the subscribers (WebSockets, or roomcast's SSE streams; epoll, one
``recvmsg`` per readable socket, the kernel's receive stamp) and the publisher (a fixed
rate, or a window of unacknowledged publishes), with roomcast bench's frames and checks.

:func:`run_trial` runs it against a started server and returns a report shaped like
``roomcast bench --json``'s, as far as RESULTS.md reads one: deliveries and latency
from the events of the measured window, lost (gaps, and offsets up to the highest
acknowledged one that never came) and out of order (an offset at or below one already
seen), the server's CPU over the window (``/proc/<pid>/stat`` of the one process: the
single-process cases only) and the reader's own share of its core.
"""

from __future__ import annotations

import json
import selectors
import shutil
import subprocess
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from roomcast.bench.report import SATURATED

SOURCE = Path(__file__).resolve().parent / "reader" / "reader.c"
READY_TIMEOUT = 180.0
"""Seconds the reader may take to open and subscribe its connections."""
PROTOCOLS = ("roomcast", "broadcast")
"""The bench protocols the reader speaks: WebSocket subscribers, and roomcast's SSE."""


def drives(protocol: str, scenario: str, workers: int) -> bool:
    """Whether the reader can drive a case: one server process (it reads one process's
    CPU); WebSocket subscribers of either protocol, or roomcast's SSE streams."""
    if workers != 1 or protocol not in PROTOCOLS:
        return False
    return scenario == "fanout" or (scenario == "sse" and protocol == "roomcast")


PASSED = ("--subscribers", "--duration", "--warmup", "--grace", "--payload-bytes", "--window",
          "--rate")  # fmt: skip
"""``roomcast bench`` options the reader takes as they are (the same meaning)."""


def build(dest: Path) -> tuple[Path | None, str | None]:
    """Compile the reader into ``dest``; (its path, None) or (None, why not)."""
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        return None, "no C compiler on PATH (apt-get install gcc)"
    exe = dest / "reader"
    done = subprocess.run(
        [cc, "-O2", "-o", str(exe), str(SOURCE)], capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        return None, f"cc failed: {done.stderr.strip()[-500:]}"
    return exe, None


def reader_command(
    exe: Path,
    ws_url: str,
    protocol: str,
    server_pid: int | None,
    args: Sequence[str],
    sse: bool = False,
) -> list[str]:
    """The reader's command line: ``args`` are roomcast bench's; the options the reader
    shares (:data:`PASSED`) go to it as they are, the rest are not its business.
    ``sse``: the subscribers are roomcast SSE streams (the publisher a WebSocket)."""
    command = [str(exe), "--url", ws_url, "--protocol", protocol]
    if sse:
        command += ["--sse", "yes"]
    if server_pid:
        command += ["--server-pid", str(server_pid)]
    for i, arg in enumerate(args[:-1]):
        if arg in PASSED:
            command += [arg, args[i + 1]]
    return command


def run_trial(
    command: list[str],
    wrap: Callable[[Sequence[str]], list[str]] = list,
    ready_timeout: float = READY_TIMEOUT,
    run_timeout: float = 120.0,
) -> dict[str, Any]:
    """Run the reader (``wrap``: e.g. ``taskset -c 1``) to its end; its report."""
    proc = subprocess.Popen(
        wrap(command), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None
        with selectors.DefaultSelector() as sel:
            sel.register(proc.stdout, selectors.EVENT_READ)
            ready = sel.select(ready_timeout)
        line = proc.stdout.readline() if ready else ""
        if not line.startswith("ready"):
            proc.kill()
            _, err = proc.communicate()
            return failed(f"reader: {err.strip()[-500:] or 'no ready line'}", proc.returncode)
        out, err = proc.communicate(timeout=run_timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        return failed(f"reader: no end within {run_timeout:g} s", None)
    lines = out.strip().splitlines()
    if proc.returncode != 0 or not lines:
        return failed(f"reader exited {proc.returncode}: {err.strip()[-500:]}", proc.returncode)
    return report(json.loads(lines[-1]), err.strip())


def failed(why: str, code: int | None) -> dict[str, Any]:
    return {"ok": False, "exit_code": code, "failure": why}


def report(summary: dict[str, Any], stderr: str = "") -> dict[str, Any]:
    """The reader's summary as a roomcast bench report (the fields RESULTS.md reads)."""
    seconds = summary["measured_s"]
    deliveries = summary["measured"]
    lost = summary["gaps"] + summary["missing"]
    closed = {"reader": summary["closed"]} if summary["closed"] else {}
    errors = summary["errors"] + summary["refused"]
    cpu = summary["cpu"]
    ok = not lost and not summary["regressions"] and not closed and not errors
    ok = ok and summary["acked"] > 0
    return {
        "ok": ok,
        "exit_code": 0 if ok else 1,
        "failure": None if ok else (stderr[-500:] or "lost, out of order, closed or refused"),
        "client": "reader",
        "config": {
            "duration": seconds,
            "subscribers": summary["subscribers"],
            "rate": summary["rate"],
            "window": summary["window"],
            "latency_at": "socket",
        },
        "publishes": True,
        "connections": summary["subscribers"] + 1,
        "duration_s": seconds,
        "window": [summary["window_start"], summary["window_stop"]],
        "deliveries": deliveries,
        "deliveries_per_s": round(deliveries / seconds, 1) if seconds else None,
        "messages_published": summary["published"],
        "messages_acked": summary["acked"],
        "messages_refused": summary["refused"],
        "publish_rate": round(summary["published_in_window"] / seconds, 1) if seconds else None,
        "latency_ms": summary["latency_ms"],
        "lost": lost,
        "duplicated": 0,
        "out_of_order": summary["regressions"],
        "errors": errors,
        "closed": closed,
        "client_cpu": round(cpu, 3),
        "client_cpu_by_process": [round(cpu, 3)],
        "client_saturated": cpu >= SATURATED,
        "server": {"cpu": summary["server_cpu"]},
        "reader": summary,
    }
