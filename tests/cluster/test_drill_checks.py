"""drill.py's Drill without a Redis Cluster (as test_sentinel.py's SentinelDrill
uses it): the checks every drill makes and the report work from the clients and
the marks alone; the helpers that need the cluster say so. No services."""

from __future__ import annotations

import time

import pytest

from .clients import Publisher, Sent, Watcher
from .drill import Drill

pytestmark = pytest.mark.cluster

ACCOUNTING = "acknowledged = received once, or a signalled gap"


def test_a_drill_without_a_cluster_checks_its_clients_and_refuses_cluster_helpers() -> None:
    drill = Drill(None, {})
    drill.mark("start")
    publisher = Publisher("r", "A", "ws://unused")
    sent = Sent(0, "r", "A", time.monotonic())
    sent.answer({"ok": True, "result": {"epoch": "e", "offset": 1}})
    publisher.sent.append(sent)
    watcher = Watcher("r", "A", "ws://unused", subscribed=True)
    drill.publishers.append(publisher)
    drill.watchers.append(watcher)

    problems = drill.checks()
    assert problems[ACCOUNTING] == [
        "r@A: 1 of 1 acknowledged publishes never received and no signal "
        "(first sent +0.0s, e:1); signals: []"
    ]
    assert [k for k, v in problems.items() if v] == [ACCOUNTING]

    watcher.on_event({"type": "message", "room": "r", "epoch": "e", "offset": 1, "data": 0})
    assert not any(drill.checks().values())
    assert drill.report(drill.checks()).startswith("0 of 6 checks failed")
    with pytest.raises(TypeError, match="Drill runs without a Redis Cluster"):
        drill.rooms_on(0)
    with pytest.raises(TypeError, match="without a Redis Cluster"):
        drill.kill(0)
