"""The results of a run: the JSON document ``--json`` writes, warnings and the exit code.

:func:`build_report` merges the workers' results (histograms merge exactly, counters
add up) into one flat document; docs/bench.md describes every field. Times in the
document are milliseconds (latencies) or seconds; rates are per second; ``client_cpu``
is the fraction of the client processes' CPUs used (1.0 = every worker busy all the
time).
"""

from __future__ import annotations

import collections
import datetime
import os
import platform
import sys
from typing import Any

from .accounting import Integrity
from .coordinator import Outcome
from .histogram import Histogram

__all__ = ["EXIT_FAILED", "EXIT_INTEGRITY", "EXIT_INTERRUPTED", "build_report"]

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_INTEGRITY = 3
EXIT_INTERRUPTED = 130
SATURATED = 0.9
"""A worker process busy more than this fraction of the time limits the measurement."""


def percentiles_ms(hist: Histogram) -> dict[str, float | int]:
    def ms(value: int) -> float:
        return round(value / 1000, 3)

    return {
        "p50": ms(hist.quantile(0.50)),
        "p90": ms(hist.quantile(0.90)),
        "p99": ms(hist.quantile(0.99)),
        "p999": ms(hist.quantile(0.999)),
        "max": ms(hist.max),
        "mean": ms(round(hist.mean)),
        "count": hist.count,
    }


def _connect_stats(results: list[dict[str, Any]]) -> dict[str, Any]:
    hist = Histogram()
    for r in results:
        hist.merge(r["connect_latency"])
    firsts = [r["connect_first"] for r in results if r["connect_first"] is not None]
    lasts = [r["connect_last"] for r in results if r["connect_last"] is not None]
    span = max(lasts) - min(firsts) if firsts and lasts else 0.0
    stats: dict[str, Any] = {
        "connections": hist.count,
        "failed": sum(r["connect_failed"] for r in results),
        "seconds": round(span, 3),
        "handshakes_per_s": round(hist.count / span, 1) if span > 0 else None,
    }
    stats.update(percentiles_ms(hist))
    return stats


def _client_cpu(results: list[dict[str, Any]]) -> tuple[float | None, list[float]]:
    fractions = [r["cpu"] / r["wall"] for r in results if r["wall"] > 0]
    if not fractions:
        return None, []
    return sum(fractions) / len(fractions), [round(f, 3) for f in fractions]


CLOCK_STEP = 0.25
"""Seconds the wall clock may move against the monotonic one in a run before the report
warns (the rounding of the two clocks is far below it)."""


def _warnings(report: dict[str, Any]) -> list[str]:
    warnings = []
    step = report.get("clock_step_s")
    if step is not None and abs(step) > CLOCK_STEP:
        warnings.append(
            f"the wall clock moved {step:+.2f} s against the monotonic clock during the run: "
            "publishes are scheduled and latencies timed on the wall clock, so both are off"
        )
    kinds = report["error_kinds"]
    if report["lost"] or report["duplicated"] or report["out_of_order"]:
        warnings.append(
            f"DELIVERY CHECK FAILED: {report['lost']} lost "
            f"({report['lost_on_closed']} on connections the server closed), "
            f"{report['duplicated']} duplicated, {report['out_of_order']} out of order"
        )
    paced = report["publisher_paced_to"]
    if paced is not None:
        limit = report["server_publish_limit"]
        stated = f" to {limit:g} publishes/s per connection" if limit else ""
        warnings.append(
            f"the server limits publishing{stated}: the publisher slowed to {paced:g}/s, so "
            "this run measured fan-out at that rate, not the most the server can do; for "
            "that, run the server with ROOMCAST_PUBLISH_RATE=0 (docs/bench.md)"
        )
    elif any(k.endswith(":rate_limited") for k in kinds):
        warnings.append(
            "the server rate-limited the publisher: run benchmark servers with "
            "ROOMCAST_PUBLISH_RATE=0"
        )
    if report["presence_notices"]:
        warnings.append(
            f"{report['presence_notices']} presence notices received: run benchmark servers "
            "with ROOMCAST_PRESENCE=false (every join is announced to every subscriber)"
        )
    if "3001" in report["closed"]:
        warnings.append(
            "subscribers were closed as slow consumers (3001): raise the server's "
            "ROOMCAST_OUTBOX_MAX_MESSAGES / ROOMCAST_OUTBOX_MAX_BYTES, or use fewer subscribers "
            "per client process"
        )
    others = {code: n for code, n in report["closed"].items() if code != "3001"}
    if others:
        codes = ", ".join(f"{n:,} x {code}" for code, n in sorted(others.items()))
        warnings.append(f"the server closed connections during the run ({codes})")
    if report["connect"]["failed"]:
        warnings.append(f"{report['connect']['failed']} connections could not be opened")
    if report["client_saturated"]:
        warnings.append(
            "the load client was saturated (a worker process used over 90% of a CPU): the "
            "numbers measure the client, not only the server; use more --processes, fewer "
            "subscribers, or another machine for the client"
        )
    if report.get("machine_saturated"):
        warnings.append(
            "client and server together used over 90% of this machine's CPUs: they compete "
            "for the same cores"
        )
    if report["publishes"] and report["messages_published"] == 0 and not report["failure"]:
        warnings.append("nothing was published")
    return warnings


def build_report(outcome: Outcome) -> dict[str, Any]:
    cfg = outcome.config
    results = outcome.results
    latency = Histogram()
    integrity = Integrity()
    errors: collections.Counter[str] = collections.Counter()
    closed: collections.Counter[str] = collections.Counter()
    samples: dict[str, str] = {}
    for r in results:
        latency.merge(r["latency"])
        integrity.add(r["integrity"])
        errors.update(r["errors"])
        closed.update(r["closed"])
        for kind, text in r["samples"].items():
            samples.setdefault(kind, text)
    measured = outcome.measured_seconds()
    deliveries = sum(r["measured"] for r in results)
    published_measured = sum(r["published_measured"] for r in results)
    client_cpu, by_process = _client_cpu(results)
    limits = [r["server_limit"] for r in results if r.get("server_limit")]
    paces = [r["paced_to"] for r in results if r.get("paced_to")]
    connections = sum(r["connected"] for r in results)
    report: dict[str, Any] = {
        "scenario": cfg.scenario,
        "protocol": cfg.protocol,
        "url": cfg.http_url,
        "config": cfg.as_json(),
        "started_at": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0]}
        | {"platform": platform.platform()},
        "publishes": cfg.publishes,
        "connections": connections,
        "duration_s": round(measured, 3),
        "window": list(outcome.window) if outcome.window else None,
        "clock_step_s": round(outcome.clock_step, 3) if outcome.clock_step is not None else None,
        "deliveries": deliveries,
        "deliveries_total": sum(r["deliveries"] for r in results),
        "deliveries_per_s": round(deliveries / measured, 1) if measured and cfg.publishes else None,
        "messages_published": sum(r["published"] for r in results),
        "messages_acked": sum(r["acked"] for r in results),
        "messages_refused": sum(r["refused"] for r in results),
        "server_publish_limit": max(limits) if limits else None,
        "publisher_paced_to": round(min(paces), 3) if paces else None,
        "publish_rate": round(published_measured / measured, 1)
        if measured and cfg.publishes
        else None,
        "latency_ms": percentiles_ms(latency),
        "latency_histogram_us": latency.to_dict(),
        "connect": _connect_stats(results),
        "lost": integrity.lost,
        "lost_on_closed": integrity.lost_on_closed,
        "duplicated": integrity.duplicated,
        "out_of_order": integrity.out_of_order,
        "incomplete_subscribers": integrity.incomplete,
        "targets": outcome.targets,
        "errors": sum(errors.values()),
        "error_kinds": dict(errors),
        "error_samples": samples,
        "closed": dict(closed),
        "presence_notices": sum(r["presence"] for r in results),
        "client_cpu": round(client_cpu, 3) if client_cpu is not None else None,
        "client_cpu_by_process": by_process,
        "client_saturated": any(f > SATURATED for f in by_process),
        "server": _server(outcome, connections),
        "interrupted": outcome.interrupted,
        "failure": outcome.failure,
    }
    if cfg.scenario == "idle":
        report["rss_per_connection"] = report["server"]["rss_per_connection"]
    server_cpu = outcome.server_cpu
    cpus = os.cpu_count() or 1
    if server_cpu is not None and client_cpu is not None:
        used = server_cpu + client_cpu * len(by_process)
        report["machine_saturated"] = used > SATURATED * cpus
    report["warnings"] = _warnings(report)
    report["exit_code"] = exit_code(report, outcome)
    report["ok"] = report["exit_code"] == EXIT_OK
    return report


def _server(outcome: Outcome, connections: int) -> dict[str, Any]:
    before, after = outcome.rss_before, outcome.rss_after
    per_connection = None
    if before is not None and after is not None and connections:
        per_connection = round((after - before) / connections)
    setup_cpu = outcome.connect_server_cpu
    cpu_per_connection = None
    if setup_cpu is not None and connections:
        cpu_per_connection = round(setup_cpu / connections * 1_000_000, 1)
    return {
        "pid": outcome.config.server_pid,
        "cpu": round(outcome.server_cpu, 3) if outcome.server_cpu is not None else None,
        "connect_cpu_s": round(setup_cpu, 3) if setup_cpu is not None else None,
        "cpu_us_per_connect": cpu_per_connection,
        "rss_before": before,
        "rss_after": after,
        "rss_per_connection": per_connection,
    }


def exit_code(report: dict[str, Any], outcome: Outcome) -> int:
    if outcome.interrupted:
        return EXIT_INTERRUPTED
    if report["lost"] or report["duplicated"] or report["out_of_order"]:
        return EXIT_INTEGRITY
    if outcome.failure or not report["connections"] or report["closed"]:
        return EXIT_FAILED
    if report["publishes"] and not report["messages_acked"]:
        return EXIT_FAILED
    return EXIT_OK
