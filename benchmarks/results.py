"""RESULTS.md from the trials of one benchmarks/run.py run: tables, ratios, targets."""

from __future__ import annotations

import importlib.metadata
import json
import os
import platform
import shutil
import statistics
import subprocess
from collections.abc import Sequence
from typing import Any

from cases import ROOT, SIDE_VENV, Case

__all__ = ["render"]

PACKAGES = ("fastapi", "starlette", "uvicorn", "websockets", "sse-starlette", "redis",
            "python-socketio", "broadcaster", "orjson")  # fmt: skip


def _run(*cmd: str) -> str:
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return ""


def machine() -> list[str]:
    cpu = ""
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    with open("/proc/meminfo") as f:
        mem_kb = int(f.readline().split()[1])
    versions = []
    for name in PACKAGES:
        try:
            versions.append(f"{name} {importlib.metadata.version(name)}")
        except importlib.metadata.PackageNotFoundError:
            continue
    side = _run(str(SIDE_VENV / "bin" / "python"), "-c",
                "import redis, broadcaster; print(redis.__version__)")  # fmt: skip
    if side:
        versions.append(f"redis-py {side} (broadcaster's Redis variant only)")
    node = _run("node", "--version") if shutil.which("node") else ""
    ws_pkg = ROOT / "benchmarks" / "peers" / "node-ws" / "node_modules" / "ws" / "package.json"
    if node and ws_pkg.exists():
        versions.append(f"node {node}, ws {json.loads(ws_pkg.read_text())['version']}")
    redis = _run("redis-server", "--version").split(" ")
    if len(redis) > 2:
        versions.append(f"redis-server {redis[2].removeprefix('v=')}")
    return [
        f"- CPU: {os.cpu_count()} x {cpu or platform.processor()}; memory "
        f"{mem_kb / 1024 / 1024:.0f} GiB; {platform.system()} {platform.release()}",
        f"- Python {platform.python_version()}; " + ", ".join(versions),
        "- Server and load client on the same machine, over loopback; the client runs "
        "`roomcast bench` with one worker process per CPU.",
    ]


def _values(trials: list[dict[str, Any]], key: str) -> list[float]:
    out = []
    for t in trials:
        value: Any = t
        for part in key.split("."):
            value = value.get(part) if isinstance(value, dict) else None
        if isinstance(value, int | float):
            out.append(float(value))
    return out


def _median(values: Sequence[float]) -> float | None:
    return statistics.median(values) if values else None


def _num(value: float | None, digits: int = 0) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def _ratio(a: float | None, b: float | None) -> str:
    return "-" if not a or not b else f"{a / b:.2f}x"


def _integrity(trials: list[dict[str, Any]]) -> str:
    parts = [int(sum(_values(trials, k))) for k in ("lost", "duplicated", "out_of_order")]
    errors = int(sum(_values(trials, "errors")))
    failed = sum(1 for t in trials if not t.get("ok"))
    text = "/".join(map(str, parts))
    if errors:
        text += f", {errors} errors"
    if failed:
        text += f", {failed} of {len(trials)} runs failed"
    return text


def _spread(values: list[float]) -> str:
    med = _median(values)
    if not values or not med:
        return "-"
    return f"{min(values):,.0f}-{max(values):,.0f} (±{(max(values) - min(values)) / med / 2:.0%})"


def throughput_table(
    cases: list[Case], trials: dict[str, list[dict[str, Any]]], baselines: Sequence[str]
) -> list[str]:
    meds = {c.key: _median(_values(trials.get(c.key, []), "deliveries_per_s")) for c in cases}
    head = ["server", "deliveries/s (median)", "min-max (spread)"]
    head += [f"x {b}" for b in baselines]
    head += ["p99 ms", "server CPU", "client CPU", "lost/dup/ooo"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for c in cases:
        t = trials.get(c.key, [])
        rates = _values(t, "deliveries_per_s")
        row = [c.label, _num(meds[c.key]), _spread(rates)]
        row += [_ratio(meds[c.key], meds.get(b)) for b in baselines]
        row += [
            _num(_median(_values(t, "latency_ms.p99")), 1),
            _num(_median(_values(t, "server.cpu")), 2),
            _num(_median(_values(t, "client_cpu")), 2),
            _integrity(t),
        ]
        lines.append("| " + " | ".join(row) + " |")
    return lines


def render(doc: dict[str, Any], cases: list[Case]) -> str:
    trials: dict[str, list[dict[str, Any]]] = doc["trials"]
    ran = [c for c in cases if c.key in trials]
    by_group = {g: [c for c in ran if c.group == g] for g in ("fanout", "fanout2", "sse", "idle")}
    med = {k: _median(_values(v, "deliveries_per_s")) for k, v in trials.items()}
    opts = doc["options"]
    out = [
        "# Benchmark results",
        "",
        f"Written by `benchmarks/run.py` on {doc['started_at']}"
        + (f" at commit `{doc['commit']}`" if doc.get("commit") else "")
        + "; every figure is the median "
        f"of {opts['rounds']} runs, interleaved, each on a freshly started server. "
        "Absolute numbers move by tens of percent between runs on this machine; compare "
        "the ratios, which were measured in the same run. `lost/dup/ooo` sums every run.",
        "",
        "## Machine",
        "",
        *machine(),
        "",
        f"## Fan-out: {opts['subscribers']} WebSocket subscribers, one room, one process",
        "",
        f"One publisher as fast as acknowledgements allow (16 in flight), "
        f"~{opts['payload_bytes']}-byte JSON data, {opts['duration']} s measured after 1 s "
        "of warm-up. p99 is publish-to-receive latency at that saturating rate.",
        "",
        *throughput_table(by_group["fanout"], trials, ("tutorial", "websockets")),
        "",
        "## Fan-out through Redis: 2 worker processes",
        "",
        *throughput_table(by_group["fanout2"], trials, ("broadcaster-redis",)),
        "",
        f"## SSE fan-out: {opts['subscribers']} EventSource-style streams",
        "",
        *throughput_table(by_group["sse"], trials, ("sse-starlette",)),
        "",
    ]
    half = doc.get("half_peak") or []
    if half:
        rate = _median(_values(half, "config.rate"))
        out += [
            "## Latency at half of roomcast's peak rate (memory broker, 1 worker)",
            "",
            f"{_num(rate, 1)} publishes/s to {opts['subscribers']} subscribers "
            f"({_num(_median(_values(half, 'deliveries_per_s')))} deliveries/s).",
            "",
            "| p50 ms | p90 ms | p99 ms | p999 ms | max ms | lost/dup/ooo |",
            "|---|---|---|---|---|---|",
            "| " + " | ".join(_num(_median(_values(half, f"latency_ms.{p}")), 2)
                             for p in ("p50", "p90", "p99", "p999", "max"))
            + f" | {_integrity(half)} |",
            "",
        ]  # fmt: skip
    light = doc.get("light") or {}
    if light:
        out += [
            f"## Latency at a light load: {doc['light_rate']:g} publishes/s to "
            f"{opts['subscribers']} subscribers",
            "",
            "The same fixed rate for each server, well below every one's peak.",
            "",
            "| server | p50 ms | p90 ms | p99 ms | p999 ms | max ms | server CPU | lost/dup/ooo |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for c in ran:
            if c.key not in light:
                continue
            t = light[c.key]
            cells = [_num(_median(_values(t, f"latency_ms.{p}")), 2)
                     for p in ("p50", "p90", "p99", "p999", "max")]  # fmt: skip
            server_cpu = _num(_median(_values(t, "server.cpu")), 2)
            out.append(f"| {c.label} | " + " | ".join(cells) + f" | {server_cpu} | "
                       f"{_integrity(t)} |")  # fmt: skip
        out.append("")
    if by_group["idle"]:
        out += [
            f"## Idle connections: {doc['idle_connections']:,} held by one process",
            "",
            "Server RSS (with its children) before the first connection and after "
            f"{opts['idle_duration']} s of holding them, divided by the connections.",
            "",
            "| server | RSS per connection, bytes (median) | min-max | connections held |",
            "|---|---|---|---|",
        ]
        for c in by_group["idle"]:
            t = trials[c.key]
            per = _values(t, "rss_per_connection")
            out.append(
                f"| {c.label} | {_num(_median(per))} | {_spread(per)} | "
                f"{_num(_median(_values(t, 'connections')))} |"
            )
        out.append("")
    out += ["## Targets (docs/performance.md)", ""]
    out += targets(med, trials, half, doc)
    if doc.get("left_out"):
        out += ["", "## Left out of this run", ""]
        out += [f"- {key}: {reason}" for key, reason in doc["left_out"].items()]
    return "\n".join(out) + "\n"


def targets(
    med: dict[str, float | None],
    trials: dict[str, list[dict[str, Any]]],
    half: list[dict[str, Any]],
    doc: dict[str, Any],
) -> list[str]:
    rows: list[tuple[str, str, bool | None]] = []

    def at_least(label: str, key: str, base: str, factor: float) -> None:
        a, b = med.get(key), med.get(base)
        if a and b:
            rows.append((label, f"{a / b:.2f}x", a >= factor * b))
        else:
            rows.append((label, "not measured", None))

    at_least("memory fan-out ≥ 1.0x websockets.broadcast()", "roomcast", "websockets", 1.0)
    at_least("memory fan-out ≥ 1.3x tutorial ConnectionManager", "roomcast", "tutorial", 1.3)
    at_least("memory fan-out ≥ 5x python-socketio", "roomcast", "socketio", 5.0)
    clean = [t for t in trials.get("roomcast", [])]
    if clean:
        kinds = ("lost", "duplicated", "out_of_order")
        bad = sum(sum(_values([t], k)) for t in clean for k in kinds)
        rows.append(("memory fan-out: 0 lost, duplicated, out of order", f"{bad:.0f}", bad == 0))
    p99 = _median(_values(half, "latency_ms.p99"))
    rows.append(("p99 < 25 ms at half the peak rate", f"{_num(p99, 1)} ms",
                 None if p99 is None else p99 < 25))  # fmt: skip
    at_least("Redis, 2 workers ≥ 2x broadcaster redis://", "roomcast-redis", "broadcaster-redis", 2)
    at_least("SSE ≥ 2x sse-starlette", "roomcast-sse", "sse-starlette", 2.0)
    per = _median(_values(trials.get("roomcast-idle", []), "rss_per_connection"))
    held = _median(_values(trials.get("roomcast-idle", []), "connections"))
    rows.append((
        "20,000 idle connections at ≤ 25 KB RSS each",
        "not measured" if per is None else f"{per / 1000:.1f} KB each at {held:,.0f} held",
        None if per is None or held is None else per <= 25_000 and held >= 20_000,
    ))  # fmt: skip
    lines = ["| target | measured | met |", "|---|---|---|"]
    for label, value, ok in rows:
        lines.append(f"| {label} | {value} | {'-' if ok is None else ('yes' if ok else 'no')} |")
    return lines
