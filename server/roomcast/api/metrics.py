"""``GET /metrics``: this process in Prometheus text format (prometheus-client).

Nothing is counted here: a collector reads the hub's plain counters
(hub/stats.py) and its census of connections when Prometheus scrapes, so the
fan-out path pays a few integer additions per event and no metric objects.
Every number is per process; with several replicas (or workers), scrape each.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from fastapi import APIRouter, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector

from ..hub.stats import LATENCY_BUCKETS, STATS
from .deps import RoomcastDep

if TYPE_CHECKING:
    from ..hub.hub import Hub

__all__ = ["metrics_registry", "router"]

router = APIRouter(tags=["health"])


class HubCollector(Collector):
    """The hub's counters and census, as metric families."""

    def __init__(self, hub: Hub) -> None:
        self.hub = hub

    def collect(self) -> Iterator[Metric]:
        hub, stats = self.hub, STATS
        websockets, streams, subscriptions, rooms = hub.census()
        connections = GaugeMetricFamily(
            "roomcast_connections", "Open connections of this process", labels=["transport"]
        )
        connections.add_metric(["websocket"], websockets)
        connections.add_metric(["sse"], streams)
        yield connections
        yield GaugeMetricFamily(
            "roomcast_subscriptions", "Room subscriptions of this process's connections",
            value=subscriptions,
        )  # fmt: skip
        yield GaugeMetricFamily(
            "roomcast_rooms", "Rooms with a subscriber on this process", value=rooms
        )
        yield CounterMetricFamily(
            "roomcast_messages_published", "Messages this process published", value=stats.published
        )
        delivered = CounterMetricFamily(
            "roomcast_messages_delivered",
            "Messages and notices queued to this process's connections",
            labels=["path"],
        )
        delivered.add_metric(["live"], stats.delivered)
        delivered.add_metric(["replay"], stats.replayed)
        yield delivered
        evictions = CounterMetricFamily(
            "roomcast_evictions",
            "Connections closed as slow consumers (3001)",
            labels=["reason"],
        )
        for reason in ("outbox_full", "send_timeout", "shutdown"):
            evictions.add_metric([reason], stats.evictions.get(reason, 0))
        yield evictions
        yield CounterMetricFamily(
            "roomcast_broker_reconnects",
            "Times the broker's connection (Redis pub/sub) was lost and made again",
            value=hub.broker.reconnects,
        )
        yield CounterMetricFamily(
            "roomcast_broker_resyncs_abandoned",
            "Rooms whose resync after a pub/sub outage kept failing until the live messages "
            "held for it reached history_size: their subscribers were sent a reset",
            value=stats.resyncs_abandoned,
        )
        yield CounterMetricFamily(
            "roomcast_peer_log_dropped",
            "Log lines about peers' bad input not written: over peer_log_per_minute",
            value=stats.peer_log_dropped,
        )
        cumulative, buckets = 0, []
        for bound, count in zip(
            (*LATENCY_BUCKETS, float("inf")), stats.latency_buckets, strict=True
        ):
            cumulative += count
            buckets.append(("+Inf" if bound == float("inf") else repr(bound), cumulative))
        yield HistogramMetricFamily(
            "roomcast_publish_to_deliver_seconds",
            "From a message's publish to this process's fan-out of it",
            buckets=buckets,
            sum_value=stats.latency_sum,
        )
        ready = GaugeMetricFamily("roomcast_ready", "1 when this process serves (see /readyz)")
        ready.add_metric([], float(hub.broker.ready and not hub.draining))
        yield ready
        yield from self.shards()

    def shards(self) -> Iterator[Metric]:
        """One sample per broker shard and family, labelled ``node`` (a cluster
        node's ``host:port``, or ``main``): as many as the cluster has nodes,
        never per room. Nothing for a broker without shards (memory)."""
        shards = self.hub.broker.shards()
        if not shards:
            return
        node = ["node"]
        up = GaugeMetricFamily(
            "roomcast_redis_shard_up",
            "1 while this process serves the shard's rooms (pub/sub link connected, "
            "publishes not failing); 0 while they answer unavailable",
            labels=node,
        )
        reconnects = CounterMetricFamily(
            "roomcast_redis_shard_reconnects",
            "Times this process's pub/sub link to the shard was lost and made again",
            labels=node,
        )
        held_rooms = GaugeMetricFamily(
            "roomcast_redis_shard_held_rooms",
            "Rooms of the shard waiting for a resync after a pub/sub outage",
            labels=node,
        )
        held_messages = GaugeMetricFamily(
            "roomcast_redis_shard_held_messages",
            "Live messages held for the shard's rooms until their resync",
            labels=node,
        )
        switches = CounterMetricFamily(
            "roomcast_redis_master_switches",
            "Times Redis Sentinel named another master for the shard (and this process "
            "followed it); only for a shard whose master the sentinels name",
            labels=node,
        )
        for shard in shards:
            up.add_metric([shard.node], float(shard.up))
            reconnects.add_metric([shard.node], shard.reconnects)
            held_rooms.add_metric([shard.node], shard.held_rooms)
            held_messages.add_metric([shard.node], shard.held_messages)
            if shard.master_switches is not None:
                switches.add_metric([shard.node], shard.master_switches)
        yield from (up, reconnects, held_rooms, held_messages)
        if switches.samples:
            yield switches


def metrics_registry(hub: Hub) -> CollectorRegistry:
    """A registry of the hub's metrics and the process's (CPU, memory, fds)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(HubCollector(hub))
    ProcessCollector(registry=registry)
    return registry


@router.get("/metrics", include_in_schema=False)
async def metrics(rc: RoomcastDep) -> Response:
    """This process's metrics in Prometheus text format."""
    return Response(generate_latest(rc.metrics), media_type=CONTENT_TYPE_LATEST)
