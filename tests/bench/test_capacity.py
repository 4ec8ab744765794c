"""benchmarks/capacity.py, the capacity model of docs/scaling.md: its arithmetic on
cases worked out by hand. No service, no timing: the model is arithmetic only."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType

import pytest

from ..conftest import ROOT

GIB = 1024**3


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("capacity", ROOT / "benchmarks" / "capacity.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["capacity"] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


capacity = _load()

# Only what a test names costs anything: every other cost is zero.
FREE = {
    field.name: 0.0
    for field in capacity.dataclasses.fields(capacity.Figures)
    if field.name != "ws_ping_interval"
}


def figures(**costs: float) -> object:
    return capacity.Figures(**{**FREE, **costs})


def test_a_rooms_subscribers_land_on_the_expected_number_of_distinct_workers() -> None:
    assert capacity.workers_with_subscribers(1, 50) == 1
    assert capacity.workers_with_subscribers(8, 1) == pytest.approx(1)
    # two subscribers on two workers: both on one worker half the time
    assert capacity.workers_with_subscribers(2, 2) == pytest.approx(1.5)
    assert capacity.workers_with_subscribers(4, 2) == pytest.approx(4 * (1 - 0.75**2))


def test_doubling_connections_doubles_workers_when_memory_binds() -> None:
    f = figures(rss_per_connection=GIB / 1000)  # 1,000 connections fill a worker's GiB
    plans = [
        capacity.plan(
            capacity.Workload(connections=n, rooms=100, worker_memory_gib=1, presence=False), f
        )
        for n in (10_000, 20_000)
    ]
    assert [p["workers"] for p in plans] == [10, 20]
    assert all(p["worker_binds"] == "memory" for p in plans)


def test_one_workers_cpu_is_the_sum_of_its_operations() -> None:
    # 4 connections, 2 rooms, 1 subscription each: 2 subscribers a room, on 2 workers
    # (1.5 workers per room). 10 publishes/s a room: 20/s in all.
    f = figures(us_per_publish_sent=100, us_per_message_received=50, us_per_delivery=10)
    w = capacity.Workload(
        connections=4, rooms=2, subs_per_connection=1, publish_rate=10, workers=2, presence=False
    )
    load = capacity.plan(w, f)["worker"]
    assert load["publishes_in"] == pytest.approx(10)  # 20/s over 2 workers
    assert load["messages_in"] == pytest.approx(15)  # 20/s x 1.5 workers / 2
    assert load["deliveries"] == pytest.approx(20)  # 20/s x 2 subscribers / 2
    assert load["cpu"] == pytest.approx((10 * 100 + 15 * 50 + 20 * 10) / 1e6)


def test_each_publish_leaves_redis_once_per_worker_with_a_subscriber() -> None:
    f = figures(redis_us_per_publish=20, redis_us_per_message=1)
    w = capacity.Workload(
        connections=20, rooms=10, subs_per_connection=1, publish_rate=2, workers=4, presence=False
    )
    redis = capacity.plan(w, f)["redis"]
    w_eff = 4 * (1 - 0.75**2)  # 2 subscribers a room over 4 workers: 1.75
    assert redis["publishes"] == 20
    assert redis["messages_out"] == pytest.approx(20 * w_eff)
    assert redis["cpu_cores"] == pytest.approx(20 * (20 + w_eff * 1) / 1e6)


def test_presence_upkeep_is_one_maintain_per_room_per_worker_per_refresh() -> None:
    f = figures(redis_us_per_maintain=30)
    w = capacity.Workload(
        connections=100, rooms=10, subs_per_connection=1, publish_rate=0, workers=1,
        presence=False, presence_refresh=5,
    )  # fmt: skip
    redis = capacity.plan(w, f)["redis"]
    assert redis["maintain_calls"] == pytest.approx(10 / 5)
    assert redis["cpu_cores"] == pytest.approx(2 * 30 / 1e6)


def test_a_hot_room_is_bounded_by_one_workers_fan_out_and_by_its_one_shard() -> None:
    f = figures(us_per_message_received=100, us_per_delivery=10, redis_us_per_publish=20,
                redis_us_per_message=1, rss_per_connection=1)  # fmt: skip
    hot = capacity.hot_room(capacity.Workload(cpu_target=0.7), f, 1000, 1.0, 10)
    # each worker: one message (100 µs) and 100 deliveries (1,000 µs) per publish
    assert hot["max_rate_worker"] == pytest.approx(0.7e6 / 1100)
    assert hot["max_rate_redis_shard"] == pytest.approx(0.7e6 / 30)
    # at 1 publish/s: 1,000 deliveries of 10 µs fit in 1 worker's 0.7 core
    assert hot["workers_needed"] == 1


def test_the_command_line_prints_the_plan_and_writes_it_as_json(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "plan.json"
    code = capacity.main(["--connections", "2000", "--rooms", "200", "--json", str(out)])
    assert code == 0
    printed = capsys.readouterr().out
    plan = json.loads(out.read_text())
    assert f"workers: {plan['workers']:,}" in printed
    assert plan["workload"]["connections"] == 2000
    assert plan["redis"]["shards"] >= 1
    assert plan["hot_room"]["subscribers"] == 100_000
