"""What a person sees: a live progress line while the run goes, then a table.

On a terminal the progress line redraws in place (rich ``Live``) with rates computed
between snapshots; elsewhere (CI logs, pipes) only phase changes are printed, one line
each. Warnings follow the table; a failed delivery check is printed loud and red.
"""

from __future__ import annotations

import time
from typing import Any

from rich.console import Console
from rich.live import Live
from rich.markup import escape
from rich.table import Table
from rich.text import Text

__all__ = ["ProgressView", "print_report"]


class ProgressView:
    """The live line; call :meth:`update` with each snapshot, :meth:`stop` at the end."""

    def __init__(self, console: Console, scenario: str, total: int) -> None:
        self.console = console
        self.scenario = scenario
        self.total = total
        self.started = time.monotonic()
        self.phase = ""
        self.last: tuple[float, dict[str, int]] | None = None
        self.rates = (0.0, 0.0)
        self.live: Live | None = None
        if console.is_terminal:
            self.live = Live(Text(""), console=console, refresh_per_second=4, transient=True)
            self.live.start()

    def update(self, phase: str, totals: dict[str, int]) -> None:
        now = time.monotonic()
        if self.last is not None and now - self.last[0] >= 0.5:
            then, before = self.last
            span = now - then
            self.rates = (
                (totals["published"] - before["published"]) / span,
                (totals["deliveries"] - before["deliveries"]) / span,
            )
            self.last = (now, totals)
        elif self.last is None:
            self.last = (now, totals)
        if phase != self.phase:
            self.phase = phase
            if self.live is None:
                line = escape(f"{self.scenario}: {phase} ({self.line(totals)})")
                self.console.print(f"[dim]{line}[/dim]")
        if self.live is not None:
            self.live.update(Text(self.line(totals)))

    def line(self, t: dict[str, int]) -> str:
        elapsed = time.monotonic() - self.started
        pub_rate, recv_rate = self.rates
        parts = [
            f"{self.scenario} {self.phase:<10} {elapsed:6.1f}s",
            f"connected {t['connected']:,}/{self.total:,}",
        ]
        if t["published"] or t["deliveries"]:
            parts.append(f"published {t['published']:,} ({pub_rate:,.0f}/s)")
            parts.append(f"received {t['deliveries']:,} ({recv_rate:,.0f}/s)")
        parts.append(f"errors {t['errors']:,}  closed {t['closed']:,}")
        return "  ".join(parts)

    def stop(self) -> None:
        if self.live is not None:
            self.live.stop()
            self.live = None


_LATENCY_AT = {
    "socket": "arrival on the socket",
    "read": "the client's read",
}
"""What ``latency_at`` means, for the table (``--latency-at``)."""


def _fmt(value: Any, unit: str = "") -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        text = f"{value:,.1f}" if value >= 100 else f"{value:,.3g}"
    elif isinstance(value, int):
        text = f"{value:,}"
    else:
        text = str(value)
    return f"{text}{unit}"


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{value:.0%}"


def print_report(console: Console, report: dict[str, Any], close_names: dict[str, str]) -> None:
    cfg = report["config"]
    title = (
        f"roomcast bench {report['scenario']} ({report['protocol']}) {report['url']}: "
        f"{report['connections']:,} connections, {cfg['processes']} client processes"
    )
    table = Table(title=title, show_header=True, header_style="bold")
    table.add_column("metric")
    table.add_column("value", justify="right")
    rows: list[tuple[str, str]] = []
    if report["publishes"]:
        lat = report["latency_ms"]
        rows += [
            ("deliveries/s", _fmt(report["deliveries_per_s"])),
            ("deliveries (measured)", _fmt(report["deliveries"])),
            ("published/s", _fmt(report["publish_rate"])),
            (
                "messages published / acked",
                f"{report['messages_published']:,} / {report['messages_acked']:,}",
            ),
            ("latency timed at", _LATENCY_AT[cfg.get("latency_at", "read")]),
            (
                "latency ms p50 / p90 / p99",
                f"{_fmt(lat['p50'])} / {_fmt(lat['p90'])} / {_fmt(lat['p99'])}",
            ),
            ("latency ms p99.9 / max", f"{_fmt(lat['p999'])} / {_fmt(lat['max'])}"),
        ]
    conn = report["connect"]
    rows += [
        ("handshakes/s", _fmt(conn["handshakes_per_s"])),
        (
            "connect ms p50 / p99 / max",
            f"{_fmt(conn['p50'])} / {_fmt(conn['p99'])} / {_fmt(conn['max'])}",
        ),
        ("connect failures", _fmt(conn["failed"])),
    ]
    server = report["server"]
    if server["pid"] is not None:
        if server["cpu"] is not None:
            rows.append(("server CPU (cores)", _fmt(server["cpu"])))
        rows.append(("server CPU per connect (µs)", _fmt(server["cpu_us_per_connect"])))
        if server["rss_per_connection"] is not None:
            rows.append(("server RSS per connection", _fmt(server["rss_per_connection"], " B")))
            rows.append(
                (
                    "server RSS before / after",
                    f"{_fmt(server['rss_before'])} / {_fmt(server['rss_after'])} B",
                )
            )
    if report["publishes"]:
        rows += [
            ("lost", _fmt(report["lost"])),
            ("duplicated", _fmt(report["duplicated"])),
            ("out of order", _fmt(report["out_of_order"])),
        ]
    closed = report["closed"]
    rows.append(
        (
            "closed by the server",
            ", ".join(f"{n:,} x {close_names.get(c, c)}" for c, n in closed.items()) or "0",
        )
    )
    rows.append(("errors", _fmt(report["errors"])))
    by_process = ", ".join(_percent(f) for f in report["client_cpu_by_process"])
    rows.append(("client CPU", f"{_percent(report['client_cpu'])} ({by_process})"))
    for name, value in rows:
        table.add_row(name, value)
    console.print(table)
    for kind, n in report["error_kinds"].items():
        sample = report["error_samples"].get(kind, "")
        console.print(f"  [yellow]error {escape(kind)}[/yellow] x {n:,}: {escape(sample)}")
    if report["failure"]:
        console.print(f"[bold red]run failed: {escape(report['failure'])}[/bold red]")
    if report["interrupted"]:
        console.print("[yellow]interrupted: partial results[/yellow]")
    for warning in report["warnings"]:
        if warning.startswith("DELIVERY CHECK FAILED"):
            console.print(f"[bold white on red] {escape(warning)} [/bold white on red]")
        else:
            console.print(f"[yellow]warning:[/yellow] {escape(warning)}")
