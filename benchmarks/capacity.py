"""A capacity model on paper: workers, Redis shards and network for a workload.

Usage (from the repository root)::

    .venv/bin/python benchmarks/capacity.py                      # 1M connections, 100k rooms
    .venv/bin/python benchmarks/capacity.py --pools 20           # the same, 20 room partitions
    .venv/bin/python benchmarks/capacity.py --presence-refresh 60 --json plan.json
    .venv/bin/python benchmarks/capacity.py --connections 2000 --rooms 200 --workers 4

No simulation: expected values from the per-operation costs measured on this machine
(docs/scaling.md says where each default comes from; every one is a flag). The model:

* Connections are spread evenly over the workers, and a room's subscribers land on
  workers at random (a load balancer that knows nothing of rooms). With S subscribers
  in a room and W workers, ``W_eff = W (1 - (1 - 1/W)^S)`` workers hold at least one of
  them. Each publish is one script call on the room's Redis shard, then one pub/sub
  message to each of those W_eff workers (Redis's fan-in), and each worker delivers it
  to its local subscribers.
* ``--pools K`` splits rooms and connections into K independent partitions (tenants,
  say) with W/K workers each: a room's subscribers are then on at most W/K workers.
* A worker is one process, one core: its CPU is publishes from its clients,
  pub/sub messages in, deliveries out, presence upkeep calls (one ``MAINTAIN`` per room
  it has subscribers in, every ``--presence-refresh`` seconds, presence on or off) and
  its share of subscribe churn, each at its measured cost. Its memory is a base plus
  connections, subscriptions and rooms. The model finds the fewest workers that keep
  each under ``--cpu-target`` and ``--worker-memory-gib`` (and ``--max-conns-per-worker``).
* Redis: CPU per publish ``a + b W_eff`` (script, then a message per worker), per
  ``MAINTAIN`` ``c + d entries``, per subscribe and unsubscribe its scripts; memory per
  room and per history entry; bytes both ways. Shards are what the busiest of CPU,
  memory and network needs at ``--cpu-target``, keys spread evenly over them.
* A hot room: ``--hot-subscribers`` spread over N workers; each worker gets one message
  per publish and delivers it to its ``S/N`` local subscribers: the rate one worker
  (and the room's one shard: a room is one slot) can sustain.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

KIB = 1024
GIB = 1024**3


@dataclass(frozen=True)
class Figures:
    """Per-operation costs. Defaults: measured here (docs/scaling.md, "Inputs")."""

    # worker CPU, µs (a worker is one process: one core at most)
    us_per_delivery: float = 12.0
    us_per_publish_sent: float = 240.0
    us_per_message_received: float = 100.0
    us_per_maintain_worker: float = 220.0
    us_per_subscribe_worker: float = 900.0
    us_per_connection_ping: float = 20.0
    ws_ping_interval: float = 20.0
    # worker memory, bytes
    worker_base_rss: float = 100 * 1024 * KIB
    rss_per_connection: float = 20_650
    rss_per_subscription: float = 300
    rss_per_room: float = 1_720
    # Redis CPU, µs
    redis_us_per_publish: float = 22.0
    redis_us_per_message: float = 0.6
    redis_us_per_maintain: float = 29.0
    redis_us_per_presence_entry: float = 8.5
    redis_us_per_subscribe: float = 40.0
    redis_us_per_unsubscribe: float = 15.0
    # Redis memory, bytes
    redis_bytes_per_room: float = 4_640
    redis_bytes_per_entry_overhead: float = 50.0
    # bytes on the wire (application bytes; TCP/IP headers added in the model)
    publish_bytes_overhead: float = 293.0
    message_bytes_overhead: float = 122.0
    reply_bytes: float = 30.0
    maintain_bytes: float = 285.0
    maintain_bytes_per_entry: float = 100.0
    event_frame_overhead: float = 133.0
    publish_frame_overhead: float = 60.0
    tcp_ip_overhead: float = 66.0


@dataclass(frozen=True)
class Workload:
    connections: float = 1_000_000
    rooms: float = 100_000
    subs_per_connection: float = 10
    publish_rate: float = 1.0
    """Publishes per second per room."""
    payload_bytes: float = 200
    presence: bool = True
    presence_refresh: float = 10.0
    history_size: float = 1000
    session_seconds: float = 3600.0
    """How long a connection stays: each subscription is made and ended once per session."""
    pools: int = 1
    workers: int | None = None
    """Fixed worker count (total); None: the fewest that fit."""
    cpu_target: float = 0.7
    worker_memory_gib: float = 4.0
    max_conns_per_worker: float = 200_000
    redis_memory_gib: float = 16.0
    nic_gbps: float = 10.0


def workers_with_subscribers(workers: float, subscribers: float) -> float:
    """Expected workers holding at least one of a room's ``subscribers``, placed at random."""
    if workers <= 1:
        return min(1.0, subscribers)
    return workers * (1 - float((1 - 1 / workers) ** subscribers))


def worker_load(w: Workload, f: Figures, per_pool: int) -> dict[str, float]:
    """One worker's load when each pool has ``per_pool`` workers."""
    k = w.pools
    conns = w.connections / k / per_pool
    rooms = w.rooms / k
    subs_per_room = w.connections * w.subs_per_connection / w.rooms
    w_eff = workers_with_subscribers(per_pool, subs_per_room)
    publishes = rooms * w.publish_rate
    local_rooms = rooms * w_eff / per_pool
    subscribes = conns * w.subs_per_connection / w.session_seconds
    presence_deliveries = 2 * subscribes * subs_per_room if w.presence else 0.0
    load = {
        "connections": conns,
        "subscriptions": conns * w.subs_per_connection,
        "local_rooms": local_rooms,
        "workers_per_room": w_eff,
        "publishes_in": publishes / per_pool,
        "messages_in": publishes * w_eff / per_pool + (2 * subscribes * w_eff if w.presence else 0),
        "deliveries": publishes * subs_per_room / per_pool + presence_deliveries,
        "maintain_calls": local_rooms / w.presence_refresh,
        "subscribes": subscribes,
    }
    cpu_us = (
        load["publishes_in"] * f.us_per_publish_sent
        + load["messages_in"] * f.us_per_message_received
        + load["deliveries"] * f.us_per_delivery
        + load["maintain_calls"] * f.us_per_maintain_worker
        + subscribes * 2 * f.us_per_subscribe_worker
        + conns / f.ws_ping_interval * f.us_per_connection_ping
    )
    load["cpu"] = cpu_us / 1e6
    load["rss"] = (
        f.worker_base_rss
        + conns * f.rss_per_connection
        + load["subscriptions"] * f.rss_per_subscription
        + local_rooms * f.rss_per_room
    )
    frame = f.event_frame_overhead + w.payload_bytes + f.tcp_ip_overhead
    message = f.message_bytes_overhead + w.payload_bytes
    entries = w.subs_per_connection * conns / max(local_rooms, 1) if w.presence else 0
    load["net_to_clients"] = load["deliveries"] * frame
    load["net_from_clients"] = load["publishes_in"] * (
        f.publish_frame_overhead + w.payload_bytes + f.tcp_ip_overhead
    )
    load["net_from_redis"] = load["messages_in"] * message + load["publishes_in"] * f.reply_bytes
    load["net_to_redis"] = load["publishes_in"] * (
        f.publish_bytes_overhead + w.payload_bytes
    ) + load["maintain_calls"] * (
        f.maintain_bytes + max(entries - 1, 0) * f.maintain_bytes_per_entry
    )
    return load


def binding(load: dict[str, float], w: Workload, f: Figures) -> dict[str, float]:
    """Each worker limit as a fraction of what it may use."""
    return {
        "cpu": load["cpu"] / w.cpu_target,
        "memory": load["rss"] / (w.worker_memory_gib * GIB),
        "connections": load["connections"] / w.max_conns_per_worker,
    }


def fewest_workers(w: Workload, f: Figures) -> int:
    """The fewest workers per pool whose every limit is at most 1 (all loads fall as
    workers are added, so a binary search finds it)."""
    if w.workers is not None:
        return max(1, math.ceil(w.workers / w.pools))
    lo, hi = 1, 1
    while max(binding(worker_load(w, f, hi), w, f).values()) > 1:
        hi *= 2
        if hi > 10**8:
            raise ValueError("no worker count fits")
    while lo < hi:
        mid = (lo + hi) // 2
        if max(binding(worker_load(w, f, mid), w, f).values()) <= 1:
            hi = mid
        else:
            lo = mid + 1
    return lo


def redis_load(w: Workload, f: Figures, per_pool: int, load: dict[str, float]) -> dict[str, float]:
    """Redis totals over every pool, and the shards they need."""
    workers = per_pool * w.pools
    publishes = w.rooms * w.publish_rate
    subs_per_room = w.connections * w.subs_per_connection / w.rooms
    w_eff = load["workers_per_room"]
    maintain = load["maintain_calls"] * workers
    entries = subs_per_room / w_eff if w.presence else 0.0
    subscribes = load["subscribes"] * workers
    message = f.message_bytes_overhead + w.payload_bytes
    notices = 2 * subscribes if w.presence else 0.0
    cpu_us = (
        publishes * (f.redis_us_per_publish + w_eff * f.redis_us_per_message)
        + maintain * (f.redis_us_per_maintain + max(entries - 1, 0) * f.redis_us_per_presence_entry)
        + subscribes * (f.redis_us_per_subscribe + f.redis_us_per_unsubscribe)
        + notices * w_eff * f.redis_us_per_message
    )
    history = min(w.history_size, w.publish_rate * 3600)  # a room busy for an hour
    memory = w.rooms * (
        f.redis_bytes_per_room + history * (f.redis_bytes_per_entry_overhead + w.payload_bytes)
    )
    bytes_in = load["net_to_redis"] * workers
    bytes_out = load["net_from_redis"] * workers
    nic = w.nic_gbps * 1e9 / 8
    shards = {
        "cpu": math.ceil(cpu_us / 1e6 / w.cpu_target),
        "memory": math.ceil(memory / (w.redis_memory_gib * GIB)),
        "network": math.ceil(max(bytes_in, bytes_out) / (nic * w.cpu_target)),
    }
    return {
        "publishes": publishes,
        "messages_out": (publishes + notices) * w_eff,
        "maintain_calls": maintain,
        "subscribes": subscribes,
        "cpu_cores": cpu_us / 1e6,
        "cpu_cores_publish": publishes * f.redis_us_per_publish / 1e6,
        "cpu_cores_fan_in": (publishes + notices) * w_eff * f.redis_us_per_message / 1e6,
        "cpu_cores_maintain": maintain
        * (f.redis_us_per_maintain + max(entries - 1, 0) * f.redis_us_per_presence_entry)
        / 1e6,
        "memory_bytes": memory,
        "bytes_in": bytes_in,
        "bytes_out": bytes_out,
        "message_bytes": message,
        **{f"shards_for_{k}": v for k, v in shards.items()},
        "shards": max(shards.values()),
    }


def hot_room(
    w: Workload, f: Figures, subscribers: float, rate: float, workers: int
) -> dict[str, float]:
    """One room of ``subscribers`` spread evenly over ``workers``, ``rate`` publishes/s."""
    per_worker = subscribers / workers
    cost = f.us_per_message_received + per_worker * f.us_per_delivery
    redis_cost = f.redis_us_per_publish + workers * f.redis_us_per_message
    frame = f.event_frame_overhead + w.payload_bytes + f.tcp_ip_overhead
    spare = w.cpu_target * 1e6 - rate * f.us_per_message_received
    need = math.inf if spare <= 0 else rate * subscribers * f.us_per_delivery / spare
    room_for = (w.worker_memory_gib * GIB - f.worker_base_rss) / f.rss_per_connection
    need = max(need, subscribers / room_for, subscribers / w.max_conns_per_worker)
    return {
        "subscribers": subscribers,
        "workers": workers,
        "subscribers_per_worker": per_worker,
        "rate": rate,
        "worker_cpu": rate * cost / 1e6,
        "max_rate_worker": w.cpu_target * 1e6 / cost,
        "max_rate_redis_shard": w.cpu_target * 1e6 / redis_cost,
        "redis_cpu": rate * redis_cost / 1e6,
        "redis_bytes_out": rate * workers * (f.message_bytes_overhead + w.payload_bytes),
        "worker_bytes_out": rate * per_worker * frame,
        "deliveries": rate * subscribers,
        "workers_needed": need if math.isinf(need) else math.ceil(need),
        "memory_bytes": subscribers * f.rss_per_connection,
        "join_deliveries_presence": subscribers * (subscribers - 1) / 2,
    }


def plan(w: Workload, f: Figures) -> dict[str, Any]:
    per_pool = fewest_workers(w, f)
    load = worker_load(w, f, per_pool)
    limits = binding(load, w, f)
    redis = redis_load(w, f, per_pool, load)
    first = max(limits, key=lambda k: limits[k])
    return {
        "workload": dataclasses.asdict(w),
        "workers": per_pool * w.pools,
        "workers_per_pool": per_pool,
        "worker": load,
        "worker_limits": limits,
        "worker_binds": first,
        "redis": redis,
        "redis_binds": max(("cpu", "memory", "network"), key=lambda k: redis[f"shards_for_{k}"]),
    }


def _si(x: float, unit: str = "") -> str:
    for div, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(x) >= div:
            return f"{x / div:,.1f} {suffix}{unit}"
    return f"{x:,.1f} {unit}".rstrip()


def report(
    p: dict[str, Any], hot: dict[str, float] | None, hot_table: list[dict[str, float]]
) -> str:
    w, load, r = p["workload"], p["worker"], p["redis"]
    subs = w["connections"] * w["subs_per_connection"] / w["rooms"]
    lines = [
        f"workload: {_si(w['connections'])} connections, {_si(w['rooms'])} rooms, "
        f"{w['subs_per_connection']:g} subscriptions each ({subs:,.0f} subscribers a room), "
        f"{w['publish_rate']:g} publish/s a room, {w['payload_bytes']:g} B; presence "
        f"{'on' if w['presence'] else 'off'}, upkeep every {w['presence_refresh']:g} s; "
        f"{w['pools']} pool(s)",
        "",
        f"workers: {p['workers']:,} ({p['workers_per_pool']:,} per pool); first limit: "
        f"{p['worker_binds']} ({', '.join(f'{k} {v:.0%}' for k, v in p['worker_limits'].items())})",
        f"  per worker: {load['connections']:,.0f} connections, {load['local_rooms']:,.0f} rooms "
        f"with local subscribers, CPU {load['cpu']:.2f} core, RSS {_si(load['rss'], 'B')}",
        f"  per worker per s: {_si(load['publishes_in'])} publishes in, "
        f"{_si(load['messages_in'])} pub/sub messages in, {_si(load['deliveries'])} deliveries, "
        f"{_si(load['maintain_calls'])} MAINTAIN calls",
        f"  a room's subscribers are on {load['workers_per_room']:.1f} workers",
        f"  network per worker: to clients {_si(load['net_to_clients'] * 8, 'bit/s')}, "
        f"from Redis {_si(load['net_from_redis'] * 8, 'bit/s')}, to Redis "
        f"{_si(load['net_to_redis'] * 8, 'bit/s')}",
        "",
        f"Redis: {r['shards']} shard(s); first limit: {p['redis_binds']} (shards for cpu "
        f"{r['shards_for_cpu']}, memory {r['shards_for_memory']}, network "
        f"{r['shards_for_network']})",
        f"  CPU {r['cpu_cores']:.1f} cores: publish scripts {r['cpu_cores_publish']:.1f}, "
        f"messages out to workers {r['cpu_cores_fan_in']:.1f}, "
        f"MAINTAIN {r['cpu_cores_maintain']:.1f}",
        f"  per s: {_si(r['publishes'])} publishes, {_si(r['messages_out'])} pub/sub messages out, "
        f"{_si(r['maintain_calls'])} MAINTAIN calls, {_si(r['subscribes'])} subscribes",
        f"  memory {_si(r['memory_bytes'], 'B')}; network in {_si(r['bytes_in'] * 8, 'bit/s')}, "
        f"out {_si(r['bytes_out'] * 8, 'bit/s')} (per shard: in "
        f"{_si(r['bytes_in'] * 8 / r['shards'], 'bit/s')}, out "
        f"{_si(r['bytes_out'] * 8 / r['shards'], 'bit/s')})",
    ]
    if hot:
        lines += [
            "",
            f"hot room: {_si(hot['subscribers'])} subscribers at {hot['rate']:g} publish/s needs "
            f"{hot['workers_needed']:,} workers at the CPU target "
            f"({_si(hot['deliveries'])} deliveries/s); presence on would send "
            f"{_si(hot['join_deliveries_presence'])} join notices while it fills",
            "  | workers | subscribers / worker | max publish/s (worker) | max publish/s (Redis "
            "shard) | Redis out at max | worker out at max |",
            "  |---|---|---|---|---|---|",
        ]
        for h in hot_table:
            rate = min(h["max_rate_worker"], h["max_rate_redis_shard"])
            redis_out = (
                rate * h["workers"] * (h["redis_bytes_out"] / max(h["rate"] * h["workers"], 1e-9))
            )
            worker_out = rate * h["worker_bytes_out"] / max(h["rate"], 1e-9)
            lines.append(
                f"  | {h['workers']:,} | {h['subscribers_per_worker']:,.0f} | "
                f"{h['max_rate_worker']:,.1f} | {h['max_rate_redis_shard']:,.0f} | "
                f"{_si(redis_out * 8, 'bit/s')} | {_si(worker_out * 8, 'bit/s')} |"
            )
    return "\n".join(lines)


def options(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    for field in dataclasses.fields(Workload):
        name = "--" + field.name.replace("_", "-")
        if field.type in ("bool", bool):
            p.add_argument(name, action=argparse.BooleanOptionalAction, default=field.default)
        elif field.name == "workers":
            p.add_argument(name, type=int, default=None, help="total workers (default: fewest)")
        else:
            kind = int if field.name == "pools" else float
            p.add_argument(
                name, type=kind, default=field.default, help=f"(default {field.default:g})"
            )
    measured = p.add_argument_group("measured figures (docs/scaling.md)")
    for field in dataclasses.fields(Figures):
        name = "--" + field.name.replace("_", "-")
        measured.add_argument(name, type=float, default=field.default, help=f"({field.default:g})")
    p.add_argument("--hot-subscribers", type=float, default=100_000)
    p.add_argument("--hot-rate", type=float, default=1.0, help="publishes/s in the hot room")
    p.add_argument("--hot-workers", default="10,50,100,200", help="worker counts for the table")
    p.add_argument("--json", type=Path, help="write the plan as JSON")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    opts = options(argv)
    w = Workload(**{k.name: getattr(opts, k.name) for k in dataclasses.fields(Workload)})
    f = Figures(**{k.name: getattr(opts, k.name) for k in dataclasses.fields(Figures)})
    result = plan(w, f)
    hot = hot_room(w, f, opts.hot_subscribers, opts.hot_rate, result["workers"])
    table = [hot_room(w, f, opts.hot_subscribers, opts.hot_rate, int(n))
             for n in opts.hot_workers.split(",") if n]  # fmt: skip
    result["hot_room"] = hot
    result["hot_room_table"] = table
    print(report(result, hot, table))
    if opts.json:
        opts.json.write_text(json.dumps(result, indent=1, default=str) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
