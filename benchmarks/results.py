"""RESULTS.md from the trials of one benchmarks/run.py run: tables, ratios, targets.

The document run.py writes (and ``render`` reads) holds ``results[scenario][case key]``,
a list of ``roomcast bench --json`` reports, one per round. Scenarios: ``w16`` (window
16, the peak), ``w1`` (window 1), ``fixed`` (the common fixed rate), ``half`` (roomcast
at half of its own window-16 peak), ``light`` (a light fixed rate), ``idle``; and
``sse-fixed`` (roomcast's SSE and WebSocket paths, and sse-starlette, at one fixed rate);
``w16-reader``, ``w1-reader``, ``fixed-reader``, ``half-reader``, ``light-reader``: the same
driven by the
compiled load client (compiled_reader.py) instead of roomcast bench, ``half-reader`` at
half of roomcast's ``w16-reader`` peak.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import platform
import shutil
import statistics
import subprocess
from collections.abc import Callable, Sequence
from typing import Any

from cases import LIMIT, ROOT, SIDE_VENV, Case

__all__ = ["cpu_us_per_delivery", "render", "targets"]

PACKAGES = ("fastapi", "starlette", "uvicorn", "websockets", "sse-starlette", "redis",
            "python-socketio", "broadcaster", "orjson", "uvloop")  # fmt: skip

WINDOW16_VS_BROADCAST = 3.0
"""No regression at window 16: roomcast's deliveries/s at least this many times
``websockets.broadcast()``'s in the same run (3.18x in RESULTS.md at 1eb8a7a, two
unpinned client processes; 3.45x in issue 19's pinned measurement at 8 in flight)."""
REDIS_VS_BROADCASTER = 2.0
"""No regression through Redis with 2 workers: at least this many times broadcaster
redis:// (docs/performance.md's target; 5.88x in RESULTS.md at 1eb8a7a, unpinned)."""
IDLE_HELD = 19_500
"""The idle targets are stated at this many connections held (20,000 less the fd slack)."""

Trials = list[dict[str, Any]]
Results = dict[str, dict[str, Trials]]


def _run(*cmd: str) -> str:
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return ""


def machine(doc: dict[str, Any]) -> list[str]:
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
        f"- {pinning_line(doc)}",
    ]


def pinning_line(doc: dict[str, Any]) -> str:
    pins = doc.get("pinning") or {}
    processes = pins.get("client_processes", 1)
    client = f"`roomcast bench --processes {processes}`"
    if not pins.get("pinned"):
        return (
            f"**Not pinned** ({pins.get('why_not', 'no record')}): server and load client "
            f"({client}) share every CPU, so each row measures the client as much as the server."
        )
    server, other = pins["server_cpus"], pins["client_cpus"]
    return (
        f"Pinned: every server on CPU {server} (`taskset -c {server}`; the 2-worker servers' "
        f"supervisor and both workers, and redis-server, on that CPU too), the load client "
        f"on CPU {other} (`taskset -c {other}`, {client}); both over loopback. Each trial's "
        "JSON records the CPUs its server process tree was allowed (`pinning`)."
    )


# -- reading trials --------------------------------------------------------------------


def _values(trials: Trials, key: str) -> list[float]:
    out = []
    for t in trials:
        value: Any = t
        for part in key.split("."):
            value = value.get(part) if isinstance(value, dict) else None
        if isinstance(value, int | float) and not isinstance(value, bool):
            out.append(float(value))
    return out


def _median(values: Sequence[float]) -> float | None:
    return statistics.median(values) if values else None


def _med(trials: Trials, key: str) -> float | None:
    return _median(_values(trials, key))


def cpu_us_per_delivery(report: dict[str, Any]) -> float | None:
    """Server CPU per delivery in microseconds: CPU seconds over the measured window
    (``server.cpu`` x its length) divided by the deliveries received in it."""
    server = report.get("server") or {}
    cpu, deliveries = server.get("cpu"), report.get("deliveries")
    seconds = (report.get("config") or {}).get("duration") or report.get("duration_s")
    if cpu is None or not deliveries or not seconds or not report.get("publishes", True):
        return None
    return round(cpu * seconds / deliveries * 1_000_000, 2)


def _cpu_per(trials: Trials) -> float | None:
    values = [cpu_us_per_delivery(t) for t in trials]
    return _median([v for v in values if v is not None])


def saturated(trials: Trials) -> int:
    """How many of the trials had the client's core saturated (client_saturated)."""
    return sum(1 for t in trials if t.get("client_saturated"))


def _num(value: float | None, digits: int = 0) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def _ratio(a: float | None, b: float | None) -> str:
    return "-" if not a or not b else f"{a / b:.2f}x"


def _integrity(trials: Trials) -> str:
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


def _rate(trials: Trials) -> str:
    """Median deliveries/s, ``≥`` in front when the client's core was saturated."""
    text = _num(_med(trials, "deliveries_per_s"))
    return f"≥ {text}" if text != "-" and saturated(trials) else text


def _client(trials: Trials) -> str:
    text = _num(_med(trials, "client_cpu"), 2)
    n = saturated(trials)
    return f"{text} (saturated {n}/{len(trials)})" if n else text


# -- tables ----------------------------------------------------------------------------

Column = tuple[str, Callable[[str, Trials], str]]


def table(cases: Sequence[Case], trials: dict[str, Trials], columns: Sequence[Column]) -> list[str]:
    """One row per case of ``cases`` measured in ``trials`` ("Not measured" if none)."""
    head = ["server", *(name for name, _ in columns)]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for c in cases:
        if c.key not in trials:
            continue
        t = trials[c.key]
        lines.append("| " + " | ".join([c.label, *(cell(c.key, t) for _, cell in columns)]) + " |")
    return lines if len(lines) > 2 else ["Not measured in this run."]


def _versus(
    trials: dict[str, Trials], base: str, key: str = "deliveries_per_s", what: str = ""
) -> Column:
    """``x base``: this row's median of ``key`` over ``base``'s in the same scenario."""
    name = {LIMIT: "limit"}.get(base, base)
    return f"{what}x {name}", lambda _, t: _ratio(_med(t, key), _med(trials.get(base, []), key))


def _cpu_versus(trials: dict[str, Trials], base: str, name: str) -> Column:
    """CPU per delivery of this row over ``base``'s (lower is better)."""
    return f"CPU/delivery x {name}", lambda _, t: _ratio(
        _cpu_per(t), _cpu_per(trials.get(base, []))
    )


def _p(p: str) -> Column:
    return f"{p} ms", lambda _, t: _num(_med(t, f"latency_ms.{p}"), 1)


RATE: Column = ("deliveries/s (median)", lambda _, t: _rate(t))
SPREAD: Column = ("min-max (spread)", lambda _, t: _spread(_values(t, "deliveries_per_s")))
SERVER_CPU: Column = ("server CPU", lambda _, t: _num(_med(t, "server.cpu"), 2))
CPU_PER: Column = ("server CPU µs/delivery", lambda _, t: _num(_cpu_per(t), 1))
CLIENT: Column = ("client CPU", lambda _, t: _client(t))
INTEGRITY: Column = ("lost/dup/ooo", lambda _, t: _integrity(t))


def _kept_up(rate: float) -> Column:
    def cell(_: str, t: Trials) -> str:
        achieved = _med(t, "publish_rate")
        if achieved is None:
            return "-"
        text = f"{achieved:,.1f}"
        return text if achieved >= 0.95 * rate else f"{text} (fell behind)"

    return "publishes/s", cell


LATENCY_AT = {
    "socket": "the receipt timed when the frame reached the subscriber's socket (the "
    "kernel's receive stamp, `--latency-at socket`), so the load client's own queue is "
    "not in it",
    "read": "the receipt timed when the load client read the frame (`--latency-at read`), "
    "so it includes the frame's wait for the client's one core",
}


def latency_timing(results: Results) -> str:
    """How the runs' latencies were timed (``config.latency_at``), in words; where runs
    differ, the cases timed otherwise than most are named."""
    cases: dict[str, set[str]] = {}
    for scenario in results.values():
        for key, trials in scenario.items():
            for t in trials:
                if t.get("publishes"):
                    kind = str(t.get("config", {}).get("latency_at", "read"))
                    cases.setdefault(kind, set()).add(key)
    if not cases:
        return "not measured"
    most = max(cases, key=lambda k: len(cases[k]))
    text = LATENCY_AT.get(most, most)
    for kind in sorted(k for k in cases if k != most):
        names = ", ".join(sorted(cases[kind] - cases[most]) or sorted(cases[kind]))
        text += f" (for {names}: {LATENCY_AT.get(kind, kind)})"
    return text


def _paired(opts: dict[str, Any]) -> str:
    """What ``--pair-rounds`` added, for the opening sentence ("" without it)."""
    more = int(opts.get("pair_rounds", 0))
    if more <= 0:
        return ""
    return (
        f" (roomcast's and the limit's rows at window 1 and at the common fixed rate: of "
        f"{int(opts['rounds']) + more} runs, {more} more of those two alone, as the targets "
        "compare them within 10%, about what one run moves by here)"
    )


def render(doc: dict[str, Any], cases: list[Case]) -> str:
    results: Results = doc["results"]
    opts = doc["options"]
    rates = doc.get("rates") or {}
    w16, w1 = results.get("w16", {}), results.get("w1", {})
    fixed, idle = results.get("fixed", {}), results.get("idle", {})
    ran = [c for c in cases if any(c.key in s for s in results.values())]
    group = {g: [c for c in ran if c.group == g] for g in ("fanout", "fanout2", "sse", "idle")}
    n = int(opts["subscribers"])
    minutes = f" in {doc['elapsed_s'] / 60:.0f} minutes" if doc.get("elapsed_s") else ""
    out = [
        "# Benchmark results",
        "",
        f"Written by `benchmarks/run.py` on {doc['started_at']}"
        + (f" at commit `{doc['commit']}`" if doc.get("commit") else "")
        + f"{minutes}; every figure is the median of {opts['rounds']} runs, interleaved, "
        "each on a freshly started server"
        + _paired(opts)
        + ". Absolute numbers move by tens of percent between "
        "runs on this machine; compare the ratios, which were measured in the same run. "
        "`lost/dup/ooo` sums every run.",
        "",
        "## Machine",
        "",
        *machine(doc),
        "",
        "## How to read the tables",
        "",
        f"{n} subscribers in one room, one publisher, ~{opts['payload_bytes']}-byte JSON data, "
        f"{opts['duration']} s measured after 1 s of warm-up. p50/p99: publish-to-receive "
        f"latency, {latency_timing(results)}. **server CPU µs/delivery**: the server's CPU "
        "seconds over the measured window (its whole process tree) divided by the "
        "deliveries received in it; it is the figure the targets are about, and it holds "
        "even where the client limits the rate. **client CPU**: the load client's share of its "
        "one core; `saturated k/n` when it was at 0.9 or more in k of the n runs, and then the "
        "deliveries/s figure is marked `≥`: a lower bound (the client, not the server, set the "
        "pace). The frame-once `transport.write` loop (benchmarks/peers/frame_once.py) is the "
        "limit row: what Python can do at all for one event to N WebSockets here.",
        "",
        "## Window 16: the peak (16 publishes in flight)",
        "",
        *table(group["fanout"], w16, [RATE, SPREAD, _versus(w16, "websockets"),
               _versus(w16, LIMIT), _p("p50"), _p("p99"), SERVER_CPU, CPU_PER, CLIENT,
               INTEGRITY]),
        "",
        "### Through Redis: 2 worker processes (window 16)",
        "",
        "Server CPU is the supervisor and both workers (not redis-server), all on the "
        "server's one CPU.",
        "",
        *table(group["fanout2"], w16, [RATE, SPREAD, _versus(w16, "broadcaster-redis"),
               _p("p99"), SERVER_CPU, CPU_PER, CLIENT, INTEGRITY]),
        "",
        f"### SSE: {n} EventSource-style streams (window 16)",
        "",
        "sse-starlette's publisher is one HTTP POST at a time, whatever the window.",
        "",
        *table(group["sse"], w16, [RATE, SPREAD, _versus(w16, "sse-starlette"), _p("p99"),
               SERVER_CPU, CPU_PER, CLIENT, INTEGRITY]),
        "",
        "## Window 1: one publish at a time",
        "",
        "The next publish leaves when the previous one is acknowledged: nothing arrives "
        "together, so nothing batches. At this pace the client is often the bottleneck; "
        "compare CPU per delivery.",
        "",
        *table(group["fanout"], w1, [RATE, _versus(w1, "websockets"), CPU_PER,
               _cpu_versus(w1, LIMIT, "limit"), _cpu_versus(w1, "websockets", "websockets"),
               _p("p50"), _p("p99"), SERVER_CPU, CLIENT, INTEGRITY]),
        "",
        "### SSE at window 1",
        "",
        "`CPU/delivery x roomcast WS`: over roomcast's WebSocket row at window 1 above.",
        "",
        *table(group["sse"], w1, [RATE, CPU_PER,
               ("CPU/delivery x roomcast WS",
                lambda _, t: _ratio(_cpu_per(t), _cpu_per(w1.get("roomcast", [])))),
               _versus(w1, "sse-starlette"), _p("p50"), _p("p99"), SERVER_CPU, CLIENT,
               INTEGRITY]),
        "",
    ]  # fmt: skip
    out += sse_rate_section([*group["fanout"], *group["sse"]], results, rates)
    out += fixed_section(group["fanout"], fixed, rates, n)
    out += half_section(ran, results, rates, n)
    out += reader_section([*group["fanout"], *group["sse"]], results, rates, n)
    if group["idle"]:
        out += [
            f"## Idle connections: {doc['idle_connections']:,} held by one process",
            "",
            "Server RSS (with its children) before the first connection and after "
            f"{opts['idle_duration']} s of holding them, divided by the connections held; "
            f"{opts.get('idle_rounds', opts['rounds'])} run(s) each.",
            "",
            "| server | held as | RSS per connection, bytes (median) | KB | min-max | held |",
            "|---|---|---|---|---|---|",
        ]
        for c in group["idle"]:
            if c.key not in idle:
                continue
            t = idle[c.key]
            per = _values(t, "rss_per_connection")
            kind = "SSE streams" if "--sse" in c.bench_args else "WebSockets"
            med = _median(per)
            kb = None if med is None else med / 1000
            out.append(
                f"| {c.label} | {kind} | {_num(med)} | {_num(kb, 1)} | "
                f"{_spread(per)} | {_num(_med(t, 'connections'))} |"
            )
        out.append("")
    out += ["## Targets (issue 19)", ""]
    out += targets(results, doc)
    out += ["", "## Earlier targets (docs/performance.md)", ""]
    out += earlier_targets(results, doc)
    if rates.get("fixed_why_not"):
        out += ["", f"No fixed common rate in this run: {rates['fixed_why_not']}."]
    if doc.get("left_out"):
        out += ["", "## Left out of this run", ""]
        out += [f"- {key}: {reason}" for key, reason in doc["left_out"].items()]
    return "\n".join(out) + "\n"


def fixed_section(
    cases: list[Case], fixed: dict[str, Trials], rates: dict[str, Any], n: int
) -> list[str]:
    if not fixed:
        return []
    rate = float(rates["fixed"])
    source = (
        "given with --common-rate"
        if rates.get("fixed_from") == "--common-rate"
        else "half of websockets.broadcast()'s window-16 peak in this run"
    )
    return [
        f"## A common fixed rate: {rate:g} publishes/s to {n} subscribers",
        "",
        f"{source} ({rate * n:,.0f} deliveries/s), the same for every server; at most 16 in "
        "flight. `publishes/s` is what the publisher achieved (`fell behind`: under 95% of "
        "the rate: the server could not keep up, and its latency is its queue).",
        "",
        *table(cases, fixed, [_kept_up(rate), RATE, _p("p50"), _p("p90"), _p("p99"),
               _versus(fixed, "websockets", "latency_ms.p99", "p99 "), SERVER_CPU, CPU_PER, CLIENT,
               INTEGRITY]),
        "",
    ]  # fmt: skip


def sse_rate_section(cases: list[Case], results: Results, rates: dict[str, Any]) -> list[str]:
    """roomcast's SSE and WebSocket paths (and sse-starlette) at one fixed rate that
    neither Python client saturates: what each costs per delivery, unbatched, at the
    same pace (window 1 runs each transport at its own client's pace)."""
    trials = results.get("sse-fixed", {})
    if not trials:
        return []
    ws = trials.get("roomcast", [])
    return [
        f"### SSE and WebSocket at one fixed rate: {rates.get('sse_fixed', 0):g} publishes/s",
        "",
        "The same rate for roomcast's two transports (and sse-starlette), low enough for the "
        "one client core: nothing batches, and a server's CPU per delivery does not depend "
        "on how fast its client reads. `CPU/delivery x roomcast WS`: over the WebSocket row.",
        "",
        *table(cases, trials, [_kept_up(float(rates.get("sse_fixed") or 0)), RATE, CPU_PER,
               ("CPU/delivery x roomcast WS", lambda _, t: _ratio(_cpu_per(t), _cpu_per(ws))),
               _p("p50"), _p("p99"), SERVER_CPU, CLIENT, INTEGRITY]),
        "",
    ]  # fmt: skip


def half_section(ran: list[Case], results: Results, rates: dict[str, Any], n: int) -> list[str]:
    half, light = results.get("half", {}), results.get("light", {})
    if not half and not light:
        return []
    rows: list[tuple[str, float | None, Trials]] = []
    if "roomcast" in half:
        rows.append(("roomcast at half of its own window-16 peak", rates.get("half"),
                     half["roomcast"]))  # fmt: skip
    for c in ran:
        if c.key in light:
            rows.append((f"{c.label}, light rate", rates.get("light"), light[c.key]))
    out = [
        "## Latency at half of roomcast's own peak, and at a light rate",
        "",
        f"Fixed rates to {n} subscribers, at most 16 in flight. The half-peak rate is half of "
        "roomcast's window-16 deliveries/s above (a lower bound there makes it lower too).",
        "",
        *_latency_rows(rows),
        *_half_over_light(half, light),
    ]
    return [*out, ""]


def reader_section(
    fanout: list[Case], results: Results, rates: dict[str, Any], n: int
) -> list[str]:
    """The scenarios driven by the compiled load client: the server's figures where
    the Python load client's one core is the limit above."""
    w16, w1 = results.get("w16-reader", {}), results.get("w1-reader", {})
    half, light = results.get("half-reader", {}), results.get("light-reader", {})
    if not w16 and not w1 and not half and not light:
        why = rates.get("reader_why_not")
        return [f"The compiled load client did not run: {why}.", ""] if why else []
    out = [
        "## Driven by the compiled load client: the server without Python's client limit",
        "",
        f"The same scenarios with benchmarks/reader/reader.c as the load client, on the "
        f"client's one CPU: {n} subscribers (WebSockets, or roomcast's SSE streams; C, "
        "epoll, one `recvmsg` per readable socket, latency timed at the kernel's receive "
        "stamp) and the publisher (a WebSocket; the same frames, "
        "rate and window as `roomcast bench`'s). **client CPU**: the reader's share of its "
        "core; saturated, a deliveries/s figure is a lower bound and a latency an upper "
        "bound (frames read together carry the stamp of the last). **server CPU**: the "
        "server process's over the measured window. lost/dup/ooo: every subscriber's "
        "offsets against the highest one the server acknowledged.",
        "",
        "### Window 16",
        "",
        *table(fanout, w16, [RATE, SPREAD, _versus(w16, "websockets"), _versus(w16, LIMIT),
               _p("p50"), _p("p99"), SERVER_CPU, CPU_PER, CLIENT, INTEGRITY]),
        "",
        "### Window 1",
        "",
        *table(fanout, w1, [RATE, _versus(w1, "websockets"), CPU_PER,
               _cpu_versus(w1, LIMIT, "limit"), _cpu_versus(w1, "websockets", "websockets"),
               _p("p50"), _p("p99"), SERVER_CPU, CLIENT, INTEGRITY]),
        "",
    ]  # fmt: skip
    fixed = results.get("fixed-reader", {})
    if fixed:
        rate = float(rates.get("fixed_reader") or 0)
        out += [
            f"### A common fixed rate: {rate:g} publishes/s",
            "",
            "Half of `websockets.broadcast()`'s window-16 peak in the table above, the same "
            "for every server.",
            "",
            *table(fanout, fixed, [_kept_up(rate), RATE, _p("p50"), _p("p90"), _p("p99"),
                   _versus(fixed, "websockets", "latency_ms.p99", "p99 "), SERVER_CPU, CPU_PER,
                   CLIENT, INTEGRITY]),
            "",
        ]  # fmt: skip
    rows: list[tuple[str, float | None, Trials]] = []
    if "roomcast" in half:
        rows.append(("roomcast at half of its own window-16 peak",
                     rates.get("half_reader"), half["roomcast"]))  # fmt: skip
    for c in fanout:
        if c.key in light:
            rows.append((f"{c.label}, light rate", rates.get("light"), light[c.key]))
    if rows:
        out += [
            "### Half of roomcast's own peak, and a light rate",
            "",
            "The half-peak rate is half of roomcast's window-16 deliveries/s in the table above.",
            "",
            *_latency_rows(rows),
            *_half_over_light(half, light),
        ]
    return [*out, ""]


def _half_over_light(half: dict[str, Trials], light: dict[str, Trials]) -> list[str]:
    """The sentence under a half-peak table: roomcast's p99 there over its light-rate p99."""
    p_half = _med(half.get("roomcast", []), "latency_ms.p99")
    p_light = _med(light.get("roomcast", []), "latency_ms.p99")
    if not p_half or not p_light:
        return []
    return ["", f"roomcast's p99 at half its peak is {p_half / p_light:.2f}x its p99 at the "
                "light rate."]  # fmt: skip


def _latency_rows(rows: list[tuple[str, float | None, Trials]]) -> list[str]:
    out = [
        "| run | publishes/s | deliveries/s | p50 ms | p90 ms | p99 ms | p999 ms | max ms | "
        "server CPU | server CPU µs/delivery | client CPU | lost/dup/ooo |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for label, rate, t in rows:
        cells = [_num(_med(t, f"latency_ms.{p}"), 2) for p in ("p50", "p90", "p99", "p999", "max")]
        published = _kept_up(rate)[1]("", t) if rate else _num(_med(t, "publish_rate"), 1)
        out.append(
            f"| {label} | {published} | {_rate(t)} | " + " | ".join(cells)
            + f" | {_num(_med(t, 'server.cpu'), 2)} | {_num(_cpu_per(t), 1)} | {_client(t)} | "
            f"{_integrity(t)} |"
        )  # fmt: skip
    return out


# -- targets ---------------------------------------------------------------------------

Row = tuple[str, str, bool | None]


def _throughput(label: str, a: Trials, b: Trials, factor: float) -> Row:
    """``a`` ≥ ``factor`` x ``b`` in deliveries/s, told apart from a client limit: a
    saturated ``a`` is a lower bound (met if it already reaches the factor), a saturated
    ``b`` makes the ratio an upper bound (met cannot be told unless ``a`` is also)."""
    x, y = _med(a, "deliveries_per_s"), _med(b, "deliveries_per_s")
    if not x or not y:
        return label, "not measured", None
    ratio = x / y
    if saturated(b):
        return label, f"{ratio:.2f}x (client-bound: compare CPU per delivery)", None
    if saturated(a):
        if ratio >= factor:
            return label, f"≥ {ratio:.2f}x (lower bound)", True
        return label, f"≥ {ratio:.2f}x (lower bound: client-bound)", None
    return label, f"{ratio:.2f}x", ratio >= factor


def _at_most(
    label: str, a: float | None, b: float | None, factor: float, unit: str = "", context: str = ""
) -> Row:
    """``a`` ≤ ``factor`` x ``b``; ``context`` (what bounds the figure) is appended."""
    if a is None or not b:
        return label, "not measured", None
    tail = f"; {context}" if context else ""
    return label, f"{a / b:.2f}x ({a:,.1f}{unit} vs {b:,.1f}{unit}{tail})", a <= factor * b


def _per_round(a: Trials, b: Trials) -> str:
    """The spread of ``a``'s CPU per delivery over ``b``'s, round by round (the
    trials of one round ran one after the other)."""
    pairs = zip(a, b, strict=False)  # a failed trial has no figure: its round is left out
    ratios = sorted(
        x / y
        for x, y in ((cpu_us_per_delivery(s), cpu_us_per_delivery(t)) for s, t in pairs)
        if x is not None and y
    )
    if len(ratios) < 2:
        return ""
    return f"round by round {ratios[0]:.2f}-{ratios[-1]:.2f}x over {len(ratios)} rounds"


def _cpu_target(label: str, scenario: dict[str, Trials]) -> Row:
    """roomcast's CPU per delivery ≤ 1.10x the limit's in ``scenario``."""
    a, b = scenario.get("roomcast", []), scenario.get(LIMIT, [])
    return _at_most(label, _cpu_per(a), _cpu_per(b), 1.10, " µs", _per_round(a, b))


def _limit_context(a: float | None, b: float | None) -> str:
    """The limit row's own ratio in the same comparison: how far a server could get."""
    return f"the limit: {a / b:.2f}x" if a is not None and b else ""


def _client_context(trials: Trials) -> str:
    """The client's CPU in the run: near 1.0 the figure measures the client."""
    return f"client CPU {_client(trials)}" if _med(trials, "client_cpu") is not None else ""


PACE_TOLERANCE = 1.25
"""CPU per delivery depends on the pace (an idle loop pays its wake-ups per event):
two rows run more than this far apart in deliveries/s are not compared per delivery."""


def _same_pace(row: Row, a: Trials, b: Trials) -> Row:
    """``row`` as it is when ``a`` and ``b`` ran at about the same deliveries/s; else
    undecided, with both paces (compare them at one fixed rate instead)."""
    x, y = _med(a, "deliveries_per_s"), _med(b, "deliveries_per_s")
    if not x or not y or max(x, y) / min(x, y) <= PACE_TOLERANCE:
        return row
    return row[0], f"{row[1]}; at {x:,.0f} against {y:,.0f} deliveries/s: not one pace", None


def _half_peak(label: str, half: Trials, light: Trials) -> Row:
    """p99 at half the peak ≤ 2x p99 at the light rate. Where the client's core was
    saturated at half the peak, its p99 is an upper bound (frames read late carry a
    later stamp): the ratio then tells "met", never "not met"."""
    a, b = _med(half, "latency_ms.p99"), _med(light, "latency_ms.p99")
    row = _at_most(label, a, b, 2.0, " ms", _client_context(half))
    if saturated(half) and row[2] is False:
        return row[0], f"{row[1]}: client-bound", None
    if saturated(half) and row[2]:
        return row[0], f"{row[1]}: an upper bound", True
    return row


def _idle(label: str, trials: Trials, limit: float) -> Row:
    per, held = _med(trials, "rss_per_connection"), _med(trials, "connections")
    if per is None or held is None:
        return label, "not measured", None
    value = f"{per / 1000:.1f} KB each at {held:,.0f} held"
    if held < IDLE_HELD:
        return label, f"{value} (fewer than {IDLE_HELD:,})", None
    return label, value, per <= limit


def targets(results: Results, doc: dict[str, Any]) -> list[str]:
    w16, w1 = results.get("w16", {}), results.get("w1", {})
    fixed, idle = results.get("fixed", {}), results.get("idle", {})
    half, light = results.get("half", {}), results.get("light", {})

    def cpu(scenario: dict[str, Trials], key: str) -> float | None:
        return _cpu_per(scenario.get(key, []))

    def p99(scenario: dict[str, Trials], key: str) -> float | None:
        return _med(scenario.get(key, []), "latency_ms.p99")

    rows: list[Row] = [
        _cpu_target("window 1: roomcast's server CPU/delivery ≤ 1.10x the limit's", w1),
        _cpu_target("window 1, compiled load client: server CPU/delivery ≤ 1.10x the limit's",
                    results.get("w1-reader", {})),
        _cpu_target("common fixed rate: roomcast's server CPU/delivery ≤ 1.10x the limit's",
                    fixed),
        _cpu_target("common fixed rate, compiled load client: server CPU/delivery ≤ 1.10x the "
                    "limit's", results.get("fixed-reader", {})),
        _throughput("window 1: deliveries ≥ 1.4x websockets.broadcast()",
                    w1.get("roomcast", []), w1.get("websockets", []), 1.4),
        _throughput("window 1, compiled load client: deliveries ≥ 1.4x websockets.broadcast()",
                    results.get("w1-reader", {}).get("roomcast", []),
                    results.get("w1-reader", {}).get("websockets", []), 1.4),
        _at_most("common fixed rate: roomcast's p99 ≤ 0.75x websockets.broadcast()'s",
                 p99(fixed, "roomcast"), p99(fixed, "websockets"), 0.75, " ms",
                 _limit_context(p99(fixed, LIMIT), p99(fixed, "websockets"))),
        _at_most("common fixed rate, compiled load client: roomcast's p99 ≤ 0.75x "
                 "websockets.broadcast()'s", p99(results.get("fixed-reader", {}), "roomcast"),
                 p99(results.get("fixed-reader", {}), "websockets"), 0.75, " ms",
                 _limit_context(p99(results.get("fixed-reader", {}), LIMIT),
                                p99(results.get("fixed-reader", {}), "websockets"))),
        _half_peak("fixed rate: p99 at half its own peak ≤ 2x p99 at the light rate",
                   half.get("roomcast", []), light.get("roomcast", [])),
        _half_peak("fixed rate, compiled load client: p99 at half its own peak there ≤ 2x "
                   "p99 at the light rate",
                   results.get("half-reader", {}).get("roomcast", []),
                   results.get("light-reader", {}).get("roomcast", [])),
        _same_pace(_at_most("SSE, window 1: server CPU/delivery ≤ 1.5x roomcast WebSocket's",
                            cpu(w1, "roomcast-sse"), cpu(w1, "roomcast"), 1.5, " µs"),
                   w1.get("roomcast-sse", []), w1.get("roomcast", [])),
        _at_most("SSE, window 1, compiled load client: server CPU/delivery ≤ 1.5x "
                 "WebSocket's", cpu(results.get("w1-reader", {}), "roomcast-sse"),
                 cpu(results.get("w1-reader", {}), "roomcast"), 1.5, " µs"),
        _at_most("SSE, both at one fixed rate: server CPU/delivery ≤ 1.5x WebSocket's",
                 cpu(results.get("sse-fixed", {}), "roomcast-sse"),
                 cpu(results.get("sse-fixed", {}), "roomcast"), 1.5, " µs"),
        _throughput("SSE at peak: deliveries ≥ 4x sse-starlette",
                    w16.get("roomcast-sse", []), w16.get("sse-starlette", []), 4.0),
        _idle("idle WebSocket: ≤ 12 KB RSS each at 19,500 held",
              idle.get("roomcast-idle", []), 12_000),
        _idle("idle SSE stream: ≤ 16 KB RSS each at 19,500 held",
              idle.get("roomcast-sse-idle", []), 16_000),
        _throughput(f"window 16, no regression: deliveries ≥ {WINDOW16_VS_BROADCAST:g}x "
                    "websockets.broadcast()", w16.get("roomcast", []),
                    w16.get("websockets", []), WINDOW16_VS_BROADCAST),
        _throughput(f"window 16, compiled load client: deliveries ≥ "
                    f"{WINDOW16_VS_BROADCAST:g}x websockets.broadcast()",
                    results.get("w16-reader", {}).get("roomcast", []),
                    results.get("w16-reader", {}).get("websockets", []),
                    WINDOW16_VS_BROADCAST),
        _throughput(f"Redis, 2 workers, no regression: ≥ {REDIS_VS_BROADCASTER:g}x "
                    "broadcaster redis://", w16.get("roomcast-redis", []),
                    w16.get("broadcaster-redis", []), REDIS_VS_BROADCASTER),
    ]  # fmt: skip
    mine = [
        t
        for name, scenario in results.items()
        if name != "idle"
        for key, trials in scenario.items()
        if key.startswith("roomcast")
        for t in trials
    ]
    if mine:
        bad = sum(sum(_values(mine, k)) for k in ("lost", "duplicated", "out_of_order"))
        rows.append(("every roomcast run: 0 lost, duplicated, out of order", f"{bad:.0f}",
                     bad == 0))  # fmt: skip
    return _target_table(rows)


def earlier_targets(results: Results, doc: dict[str, Any]) -> list[str]:
    w16, half = results.get("w16", {}), results.get("half", {})
    rows: list[Row] = [
        _throughput("window 16 ≥ 1.3x tutorial ConnectionManager", w16.get("roomcast", []),
                    w16.get("tutorial", []), 1.3),
        _throughput("window 16 ≥ 5x python-socketio", w16.get("roomcast", []),
                    w16.get("socketio", []), 5.0),
    ]  # fmt: skip
    p99 = _med(half.get("roomcast", []), "latency_ms.p99")
    rows.append(("p99 < 25 ms at half the peak rate", f"{_num(p99, 1)} ms",
                 None if p99 is None else p99 < 25))  # fmt: skip
    per = _med(results.get("idle", {}).get("roomcast-idle", []), "rss_per_connection")
    held = _med(results.get("idle", {}).get("roomcast-idle", []), "connections")
    rows.append((
        "20,000 idle connections at ≤ 25 KB RSS each",
        "not measured" if per is None else f"{per / 1000:.1f} KB each at {held or 0:,.0f} held",
        None if per is None or held is None or held < IDLE_HELD else per <= 25_000,
    ))  # fmt: skip
    return _target_table(rows)


def _target_table(rows: list[Row]) -> list[str]:
    lines = ["| target | measured | met |", "|---|---|---|"]
    for label, value, ok in rows:
        lines.append(f"| {label} | {value} | {'-' if ok is None else ('yes' if ok else 'no')} |")
    return lines
