"""``roomcast bench``: parse, run, show, write JSON, exit with the verdict.

Before it starts any worker it checks that something accepts TCP connections at the
server's address: a run that cannot connect at all ends at once with one line. So does
a run in which no connection could be opened (a server there, but not one that takes the
protocol's connections): one line instead of a table of zeros.

Exit codes: 0 the run completed and every delivery checked out; 1 the run failed (no
connection, a worker died, nothing acknowledged); 2 a bad command line or a missing
optional package; 3 a delivery was lost, duplicated or out of order; 130 interrupted.
"""

from __future__ import annotations

import json
import socket
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from rich.console import Console

from ..protocol.codes import CloseCode, close_reason
from .channel import ChannelError
from .config import BenchConfig, parse_config
from .coordinator import Coordinator, Outcome
from .display import ProgressView, print_report
from .report import build_report

__all__ = ["main", "run", "unreachable"]

EXIT_USAGE = 2
PROBE_TIMEOUT = 5.0
"""Seconds the check before the run waits for a TCP connection to the server."""


def close_names(cfg: BenchConfig) -> dict[str, str]:
    """Readable names of close codes (roomcast's table; others' codes stay numbers)."""
    if cfg.protocol != "roomcast":
        return {}
    return {str(int(code)): f"{int(code)} ({close_reason(code)})" for code in CloseCode}


def unreachable(cfg: BenchConfig, timeout: float = PROBE_TIMEOUT) -> str | None:
    """Why nothing will connect to ``cfg``'s server (None: a TCP connection opened)."""
    parts = urlsplit(cfg.http_url)
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return None
    except socket.gaierror as exc:
        why = f"cannot resolve {host!r} ({exc.strerror})"
    except TimeoutError:
        why = f"no answer within {timeout:g} s"
    except ConnectionRefusedError:
        why = "connection refused"
    except OSError as exc:
        why = exc.strerror or type(exc).__name__
    return (
        f"cannot connect to {cfg.http_url}: {why}. Is the server running? "
        "(`roomcast serve`; --url, or ROOMCAST_HOST and ROOMCAST_PORT, say where)"
    )


def _say(line: str) -> None:
    print(f"roomcast bench: {line}", file=sys.stderr, flush=True)


def _never_connected(report: dict[str, Any], cfg: BenchConfig) -> str:
    samples: dict[str, str] = report["error_samples"]
    why = report["failure"] or next(iter(samples.values()), None)
    line = f"no connection to {cfg.http_url if cfg.sse else cfg.ws_url} opened"
    return f"{line} (0 of {cfg.connections:,}): {why}" if why else line


def _write_json(cfg: BenchConfig, report: dict[str, Any], say: Callable[[str], None]) -> None:
    if cfg.json_path:
        Path(cfg.json_path).write_text(json.dumps(report, indent=2) + "\n")
        say(f"results written to {cfg.json_path}")


def run(cfg: BenchConfig, console: Console | None = None) -> int:
    """Carry out one run of ``cfg``; print the results; return the exit code."""
    if console is None:
        console = Console(highlight=False)
        if not console.is_terminal:  # logs and pipes: room for the table, no wrapping
            console = Console(highlight=False, width=120)
    if cfg.protocol == "socketio":
        from .sio import load_socketio

        try:
            load_socketio()
        except ChannelError as exc:
            console.print(f"roomcast bench: {exc}", style="red", markup=False)
            return EXIT_USAGE

    def dim(line: str) -> None:
        console.print(line, style="dim", markup=False)

    problem = unreachable(cfg)
    if problem is not None:
        report = build_report(Outcome(cfg, failure=problem))
        _say(problem)
        _write_json(cfg, report, dim)
        return int(report["exit_code"])
    dim(
        f"{cfg.scenario}: {cfg.connections:,} connections to {cfg.http_url} "
        f"from {cfg.processes} client process{'es' if cfg.processes > 1 else ''}"
    )
    view = ProgressView(console, cfg.scenario, cfg.connections)
    try:
        outcome = Coordinator(cfg, view.update).run()
    finally:
        view.stop()
    report = build_report(outcome)
    if report["connections"] == 0 and not outcome.interrupted:
        _say(_never_connected(report, cfg))
    else:
        print_report(console, report, close_names(cfg))
    _write_json(cfg, report, dim)
    code: int = report["exit_code"]
    return code


def main(
    argv: Sequence[str] | None = None,
    prog: str = "roomcast bench",
    default_url: Callable[[], str] | None = None,
) -> int:
    """Entry point of ``roomcast bench ARGS`` (``argv`` without the program name)."""
    cfg = parse_config(sys.argv[1:] if argv is None else argv, prog, default_url)
    return run(cfg)
