"""What this process's hub has done, as plain counters: read by /metrics.

Counting happens on the fan-out path, so it is a few integer additions per
event (never per subscriber) and one bucket lookup for the publish-to-deliver
latency. The numbers are per process, like every Prometheus target: each
worker or replica is scraped on its own. Gauges (connections, rooms,
subscriptions) are not kept here; the hub answers them when asked.
"""

from __future__ import annotations

import asyncio
from bisect import bisect_left
from typing import Any

from .broker import Duplicate

__all__ = ["LATENCY_BUCKETS", "STATS", "EvictionReason", "HubStats", "count_published"]

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
"""Upper bounds, in seconds, of the publish-to-deliver histogram's buckets."""

EvictionReason = str
"""``outbox_full`` (the bounded outbox overflowed), ``send_timeout`` (one send
made no progress for ``send_timeout``), ``shutdown`` (still open when the drain
timed out)."""


class HubStats:
    """Counters since the process started."""

    __slots__ = (
        "delivered",
        "evictions",
        "latency_buckets",
        "latency_count",
        "latency_sum",
        "peer_log_dropped",
        "published",
        "replayed",
        "resyncs_abandoned",
    )

    def __init__(self) -> None:
        self.published = 0  # events this process published (the broker gave them a place)
        self.delivered = 0  # live events and notices offered to local subscribers
        self.replayed = 0  # events queued to subscribers by a resume's replay
        self.resyncs_abandoned = 0  # Redis rooms whose resync hold hit its bound (reset)
        self.evictions: dict[EvictionReason, int] = {}
        self.peer_log_dropped = 0  # lines about peers' bad input over peer_log_per_minute
        self.latency_buckets = [0] * (len(LATENCY_BUCKETS) + 1)  # the last one: +Inf
        self.latency_sum = 0.0
        self.latency_count = 0

    def observe_latency(self, seconds: float) -> None:
        """One event reached this process's fan-out ``seconds`` after its publish."""
        self.latency_buckets[bisect_left(LATENCY_BUCKETS, seconds)] += 1
        self.latency_sum += seconds
        self.latency_count += 1

    def evicted(self, reason: EvictionReason) -> None:
        self.evictions[reason] = self.evictions.get(reason, 0) + 1


STATS = HubStats()
"""The process's counters (several hubs in one process add to the same ones)."""


def count_published(accepted: asyncio.Future[Any]) -> None:
    """Count the publish ``accepted`` stands for once the broker has placed it
    (a duplicate of an earlier publish, broker.Duplicate, is not counted)."""
    if accepted.done():
        _count_published(accepted)
    else:
        accepted.add_done_callback(_count_published)


def _count_published(accepted: asyncio.Future[Any]) -> None:
    done = not accepted.cancelled() and accepted.exception() is None
    if done and not isinstance(accepted.result(), Duplicate):
        STATS.published += 1
