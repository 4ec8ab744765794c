"""The hub's counters behind /metrics (hub/stats.py)."""

from __future__ import annotations

from roomcast.hub.hub import Hub
from roomcast.hub.memory import MemoryBroker
from roomcast.hub.stats import LATENCY_BUCKETS, STATS, HubStats
from roomcast.hub.subscriber import Subscriber


def test_latency_lands_in_the_first_bucket_that_holds_it() -> None:
    stats = HubStats()
    for seconds in (0.0001, 0.001, 0.0011, 7.0):
        stats.observe_latency(seconds)
    assert stats.latency_count == 4
    assert stats.latency_buckets[0] == 1  # <= 0.0005
    assert stats.latency_buckets[LATENCY_BUCKETS.index(0.001)] == 1  # le is inclusive
    assert stats.latency_buckets[LATENCY_BUCKETS.index(0.0025)] == 1
    assert stats.latency_buckets[-1] == 1  # +Inf
    assert abs(stats.latency_sum - 7.0022) < 1e-9


def test_an_eviction_is_counted_once_with_its_reason() -> None:
    before = dict(STATS.evictions)
    sub = Subscriber("c", "u", max_messages=1, max_bytes=1 << 20)
    sub.on_evict = lambda: None
    assert sub.offer("a")
    assert not sub.offer("b")  # over the bound: evicted
    assert not sub.offer("c")  # already closed: no second eviction
    sub.evict("shutdown")  # the drain giving up on it later does not count it again
    assert STATS.evictions.get("outbox_full", 0) == before.get("outbox_full", 0) + 1
    assert STATS.evictions.get("shutdown", 0) == before.get("shutdown", 0)


async def test_a_stalled_send_is_counted_as_send_timeout() -> None:
    before = STATS.evictions.get("send_timeout", 0)
    hub = Hub(MemoryBroker())
    sub = Subscriber("c", "u", max_messages=10, max_bytes=1 << 20)
    hub.register(sub)
    sub.sending = True  # a send that never finishes
    assert hub.check_sends() == 0  # no progress for one interval
    assert hub.check_sends() == 1  # ...and for two: evicted
    assert STATS.evictions["send_timeout"] == before + 1
    assert hub.census() == (1, 0, 0, 0)
