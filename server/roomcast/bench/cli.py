"""``roomcast bench``: parse, run, show, write JSON, exit with the verdict.

Exit codes: 0 the run completed and every delivery checked out; 1 the run failed (no
connection, a worker died, nothing acknowledged); 2 a bad command line or a missing
optional package; 3 a delivery was lost, duplicated or out of order; 130 interrupted.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path

from rich.console import Console

from ..protocol.codes import CloseCode, close_reason
from .channel import ChannelError
from .config import BenchConfig, parse_config
from .coordinator import Coordinator
from .display import ProgressView, print_report
from .report import build_report

__all__ = ["main", "run"]

EXIT_USAGE = 2


def close_names(cfg: BenchConfig) -> dict[str, str]:
    """Readable names of close codes (roomcast's table; others' codes stay numbers)."""
    if cfg.protocol != "roomcast":
        return {}
    return {str(int(code)): f"{int(code)} ({close_reason(code)})" for code in CloseCode}


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
    view = ProgressView(console, cfg.scenario, cfg.connections)
    try:
        outcome = Coordinator(cfg, view.update).run()
    finally:
        view.stop()
    report = build_report(outcome)
    print_report(console, report, close_names(cfg))
    if cfg.json_path:
        Path(cfg.json_path).write_text(json.dumps(report, indent=2) + "\n")
        console.print(f"results written to {cfg.json_path}", style="dim", markup=False)
    code: int = report["exit_code"]
    return code


def main(argv: Sequence[str] | None = None, prog: str = "roomcast bench") -> int:
    """Entry point of ``roomcast bench ARGS`` (``argv`` without the program name)."""
    cfg = parse_config(sys.argv[1:] if argv is None else argv, prog)
    return run(cfg)
