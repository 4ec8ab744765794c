"""The contract every Broker must meet. Subclass it with a ``make_broker`` fixture.

class TestMyBroker(BrokerContract):
    shares_control = True  # brokers made in one namespace are one deployment

    @pytest.fixture
    async def make_broker(self):
        async with started_brokers(lambda history_size, namespace: MyBroker(...)) as make:
            yield make

``namespace`` ("" unless a test asks for another) separates deployments: brokers
made with the same one are processes of one deployment (Redis: one prefix).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from roomcast.hub.broker import Broker, BrokerSink, Duplicate, IdempotencyKey, PresenceEntry
from roomcast.protocol.events import Event, Notice, Position

MakeBroker = Callable[..., Awaitable[Broker]]


class RecordingSink:
    """A hub stand-in that records what the broker delivers, in order."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        self.notices: list[Notice] = []
        self.controls: list[dict[str, object]] = []

    def deliver(self, event: Event) -> None:
        self.events.append(event)

    def deliver_notice(self, notice: Notice) -> None:
        self.notices.append(notice)

    def deliver_control(self, message: dict[str, object]) -> None:
        self.controls.append(message)


@contextlib.asynccontextmanager
async def started_brokers(build: Callable[[int, str], Broker]) -> AsyncIterator[MakeBroker]:
    """A ``make_broker`` factory: builds (``build(history_size, namespace)``), binds
    and starts brokers; stops them after."""
    started: list[Broker] = []

    async def make(sink: BrokerSink, history_size: int = 100, namespace: str = "") -> Broker:
        broker = build(history_size, namespace)
        broker.bind(sink)
        await broker.start()
        assert broker.ready
        started.append(broker)
        return broker

    try:
        yield make
    finally:
        for broker in started:
            await broker.stop()


async def bound(make_broker: MakeBroker, **options: object) -> tuple[Broker, RecordingSink]:
    sink = RecordingSink()
    broker = await make_broker(sink=sink, **options)
    return broker, sink


async def publish_n(broker: Broker, room: str, n: int) -> list[Event]:
    return [await broker.publish(room, b'{"n":%d}' % i, "tester") for i in range(n)]


class BrokerContract:
    shares_control = False
    """Whether brokers made in one namespace reach each other (several processes of
    one deployment); a memory broker is a deployment of its own."""

    @pytest.fixture
    def make_broker(self) -> MakeBroker:
        raise NotImplementedError

    async def test_offsets_start_at_1_and_increase_by_one_in_one_epoch(
        self, make_broker: MakeBroker
    ) -> None:
        broker, _ = await bound(make_broker)
        events = await publish_n(broker, "r1", 5)
        assert [e.offset for e in events] == [1, 2, 3, 4, 5]
        assert len({e.epoch for e in events}) == 1
        assert all(e.room == "r1" and e.sender == "tester" for e in events)

    async def test_publishes_enqueued_back_to_back_get_offsets_in_enqueue_order(
        self, make_broker: MakeBroker
    ) -> None:
        broker, sink = await bound(make_broker)
        await broker.subscribe("q")
        futures = [
            broker.enqueue_publish("q" if i % 3 else "q2", b'{"n":%d}' % i, "tester")
            for i in range(60)
        ]
        done_order: list[int] = []
        for i, future in enumerate(futures):
            future.add_done_callback(lambda _, i=i: done_order.append(i))
        events = [await future for future in futures]
        in_q = [e for e in events if e.room == "q"]
        assert [e.offset for e in in_q] == list(range(1, len(in_q) + 1))
        assert [e.offset for e in events if e.room == "q2"] == list(range(1, 21))
        assert [e.data for e in in_q] == [b'{"n":%d}' % i for i in range(60) if i % 3]
        assert done_order == sorted(done_order)  # completed in the order enqueued
        await sink_has(sink, len(in_q))
        assert [e.offset for e in sink.events] == [e.offset for e in in_q]

    async def test_rooms_have_independent_offsets_and_epochs(self, make_broker: MakeBroker) -> None:
        broker, _ = await bound(make_broker)
        await publish_n(broker, "a", 3)
        (b1,) = await publish_n(broker, "b", 1)
        assert b1.offset == 1

    async def test_only_subscribed_rooms_reach_the_sink_in_order(
        self, make_broker: MakeBroker
    ) -> None:
        broker, sink = await bound(make_broker)
        await broker.subscribe("in")
        await publish_n(broker, "out", 2)
        published = await publish_n(broker, "in", 10)
        await sink_has(sink, 10)
        assert [(e.room, e.offset) for e in sink.events] == [(e.room, e.offset) for e in published]
        assert sink.events[0].data == b'{"n":0}'

    async def test_unsubscribe_stops_delivery(self, make_broker: MakeBroker) -> None:
        broker, sink = await bound(make_broker)
        await broker.subscribe("r")
        await publish_n(broker, "r", 1)
        await sink_has(sink, 1)
        await broker.unsubscribe("r")
        await publish_n(broker, "r", 3)
        await broker.subscribe("other")
        await publish_n(broker, "other", 1)  # a marker: everything before it has arrived
        await sink_has(sink, 2)
        assert [e.room for e in sink.events] == ["r", "other"]

    async def test_live_position_is_the_last_event_handed_to_the_sink(
        self, make_broker: MakeBroker
    ) -> None:
        broker, sink = await bound(make_broker)
        assert broker.live_position("r") is None
        await publish_n(broker, "r", 2)
        await broker.subscribe("r")
        assert broker.live_position("r") == (await broker.recover("r", None)).position
        events = await publish_n(broker, "r", 3)
        await sink_has(sink, 3)
        assert broker.live_position("r") == events[-1].position
        await broker.unsubscribe("r")
        assert broker.live_position("r") is None

    async def test_recover_without_since_gives_the_position_and_no_events(
        self, make_broker: MakeBroker
    ) -> None:
        broker, _ = await bound(make_broker)
        events = await publish_n(broker, "r", 3)
        rec = await broker.recover("r", None)
        assert rec.position == Position(events[0].epoch, 3)
        assert (rec.events, rec.recovered) == ([], False)

    async def test_a_fresh_room_is_at_offset_0(self, make_broker: MakeBroker) -> None:
        broker, _ = await bound(make_broker)
        rec = await broker.recover("fresh", None)
        assert rec.position.offset == 0
        assert rec.position.epoch

    async def test_recover_since_a_retained_position_returns_every_later_event(
        self, make_broker: MakeBroker
    ) -> None:
        broker, _ = await bound(make_broker, history_size=10)
        events = await publish_n(broker, "r", 8)
        rec = await broker.recover("r", Position(events[0].epoch, 3))
        assert rec.recovered
        assert [e.offset for e in rec.events] == [4, 5, 6, 7, 8]
        assert rec.events[0].data == b'{"n":3}'
        assert rec.position.offset == 8

    async def test_recover_at_the_current_position_is_complete_and_empty(
        self, make_broker: MakeBroker
    ) -> None:
        broker, _ = await bound(make_broker)
        events = await publish_n(broker, "r", 2)
        rec = await broker.recover("r", events[-1].position)
        assert (rec.recovered, rec.events) == (True, [])

    async def test_recover_from_offset_0_of_the_epoch_replays_everything_retained(
        self, make_broker: MakeBroker
    ) -> None:
        broker, _ = await bound(make_broker)
        events = await publish_n(broker, "r", 3)
        rec = await broker.recover("r", Position(events[0].epoch, 0))
        assert rec.recovered
        assert [e.offset for e in rec.events] == [1, 2, 3]

    async def test_recover_from_another_epoch_is_not_recovered(
        self, make_broker: MakeBroker
    ) -> None:
        broker, _ = await bound(make_broker)
        await publish_n(broker, "r", 2)
        rec = await broker.recover("r", Position("other-epoch", 1))
        assert (rec.recovered, rec.events) == (False, [])

    async def test_recover_from_a_future_offset_is_not_recovered(
        self, make_broker: MakeBroker
    ) -> None:
        broker, _ = await bound(make_broker)
        events = await publish_n(broker, "r", 2)
        rec = await broker.recover("r", Position(events[0].epoch, 99))
        assert (rec.recovered, rec.events) == (False, [])

    async def test_recover_past_the_history_window_is_not_recovered(
        self, make_broker: MakeBroker
    ) -> None:
        broker, _ = await bound(make_broker, history_size=5)
        events = await publish_n(broker, "r", 12)
        epoch = events[0].epoch
        assert not (await broker.recover("r", Position(epoch, 6))).recovered
        rec = await broker.recover("r", Position(epoch, 7))  # 8..12 are the 5 retained
        assert rec.recovered
        assert [e.offset for e in rec.events] == [8, 9, 10, 11, 12]

    async def test_history_pages_backwards_oldest_first(self, make_broker: MakeBroker) -> None:
        broker, _ = await bound(make_broker, history_size=20)
        await publish_n(broker, "r", 12)
        page = await broker.history("r", limit=5, before=None)
        assert [e.offset for e in page.events] == [8, 9, 10, 11, 12]
        assert page.more
        page = await broker.history("r", limit=5, before=8)
        assert [e.offset for e in page.events] == [3, 4, 5, 6, 7]
        page = await broker.history("r", limit=5, before=3)
        assert [e.offset for e in page.events] == [1, 2]
        assert not page.more
        assert page.position.offset == 12

    async def test_history_stops_at_the_retained_window(self, make_broker: MakeBroker) -> None:
        broker, _ = await bound(make_broker, history_size=4)
        await publish_n(broker, "r", 10)
        page = await broker.history("r", limit=50, before=None)
        assert [e.offset for e in page.events] == [7, 8, 9, 10]
        assert not page.more
        assert (await broker.history("r", limit=5, before=5)).events == []

    async def test_history_of_an_empty_room_is_empty(self, make_broker: MakeBroker) -> None:
        broker, _ = await bound(make_broker)
        page = await broker.history("nothing", limit=10, before=None)
        assert (page.events, page.more, page.position.offset) == ([], False, 0)

    async def test_presence_lists_added_entries_until_removed(
        self, make_broker: MakeBroker
    ) -> None:
        broker, _ = await bound(make_broker)
        await broker.presence_add("r", PresenceEntry("c1", "ann", 1.0))
        await broker.presence_add("r", PresenceEntry("c2", "bob", 2.0))
        await broker.presence_add("other", PresenceEntry("c3", "cy", 3.0))
        assert {e.user for e in await broker.presence_list("r")} == {"ann", "bob"}
        await broker.presence_remove("r", "c1")
        assert [e.conn for e in await broker.presence_list("r")] == ["c2"]
        await broker.presence_remove("r", "unknown")
        assert await broker.presence_list("empty") == []

    async def test_notices_reach_subscribed_rooms_and_are_not_history(
        self, make_broker: MakeBroker
    ) -> None:
        broker, sink = await bound(make_broker)
        await broker.subscribe("r")
        await broker.publish_notice(Notice("join", "r", {"user": "ann", "conn": "c1"}))
        await broker.publish_notice(Notice("join", "elsewhere", {"user": "x", "conn": "c9"}))
        await publish_n(broker, "r", 1)
        await sink_has(sink, 1)
        assert [(n.kind, n.room) for n in sink.notices] == [("join", "r")]
        assert [e.offset for e in (await broker.history("r", limit=10, before=None)).events] == [1]

    async def test_a_control_message_reaches_its_own_process_before_publish_control_returns(
        self, make_broker: MakeBroker
    ) -> None:
        broker, sink = await bound(make_broker)
        await broker.publish_control({"op": "test", "n": 1, "user": "ünï"})
        assert sink.controls == [{"op": "test", "n": 1, "user": "ünï"}]
        assert (sink.events, sink.notices) == ([], [])  # in no room

    async def test_a_control_message_reaches_every_process_of_the_deployment_once(
        self, make_broker: MakeBroker
    ) -> None:
        a, a_sink = await bound(make_broker)
        b, b_sink = await bound(make_broker)
        await a.publish_control({"n": 1})
        await b.publish_control({"n": 2})  # after 1 on the way: arrives after any copy of 1
        await a.publish_control({"n": 3})  # ...and this after any copy of 2
        if not self.shares_control:
            assert (a_sink.controls, b_sink.controls) == ([{"n": 1}, {"n": 3}], [{"n": 2}])
            return
        await controls_have(a_sink, 3)
        await controls_have(b_sink, 3)
        for sink in (a_sink, b_sink):
            assert Counter(c["n"] for c in sink.controls) == {1: 1, 2: 1, 3: 1}
            assert (sink.events, sink.notices) == ([], [])

    async def test_a_control_message_does_not_reach_another_deployment(
        self, make_broker: MakeBroker
    ) -> None:
        a, a_sink = await bound(make_broker)
        _, other_sink = await bound(make_broker, namespace="other")
        await a.publish_control({"n": 1})
        if self.shares_control:
            marker, _ = await bound(make_broker, namespace="other")
            await marker.publish_control({"n": 2})  # arrives after 1 would have
            await controls_have(other_sink, 1)
        assert other_sink.controls == ([{"n": 2}] if self.shares_control else [])
        assert a_sink.controls == [{"n": 1}]

    # -- idempotency keys -----------------------------------------------------------

    async def test_a_key_used_again_in_the_window_answers_the_first_position_and_publishes_nothing(
        self, make_broker: MakeBroker
    ) -> None:
        broker, sink = await bound(make_broker)
        await broker.subscribe("r")
        key = IdempotencyKey("alice", "k-1")
        first = await broker.publish("r", b'{"n":1}', "Alice", idempotency=key)
        assert not isinstance(first, Duplicate)
        again = await broker.publish("r", b'{"n":2}', "Alice again", idempotency=key)
        assert isinstance(again, Duplicate)
        assert again.position == first.position
        assert again.original is not None
        assert (again.data, again.sender) == (b'{"n":1}', "Alice")  # the first one's
        marker = await broker.publish("r", b'{"n":3}', "Alice")  # arrives after any copy
        assert marker.offset == first.offset + 1
        await sink_has(sink, 2)
        assert [(e.offset, e.data) for e in sink.events] == [(1, b'{"n":1}'), (2, b'{"n":3}')]
        page = await broker.history("r", limit=10, before=None)
        assert [e.data for e in page.events] == [b'{"n":1}', b'{"n":3}']

    async def test_keys_are_apart_per_owner_and_per_room_whatever_characters_they_hold(
        self, make_broker: MakeBroker
    ) -> None:
        broker, _ = await bound(make_broker)
        keys = [("a:b", "c"), ("a", "b:c"), ("a:b:", "c"), ("", "a:b:c"), ("3:a", "bc"), ("ü", "x")]
        keys += [("a", "{r}:c"), ("ab", ":c")]
        events = [
            await broker.publish("r", b"1", "x", idempotency=IdempotencyKey(owner, key))
            for owner, key in keys
        ]
        elsewhere = await broker.publish("r2", b"1", "x", idempotency=IdempotencyKey("a", "b:c"))
        assert not any(isinstance(e, Duplicate) for e in [*events, elsewhere])
        assert [e.offset for e in events] == list(range(1, len(keys) + 1))
        for (owner, key), event in zip(keys, events, strict=True):
            again = await broker.publish("r", b"2", "x", idempotency=IdempotencyKey(owner, key))
            assert isinstance(again, Duplicate)
            assert again.position == event.position

    async def test_publishes_enqueued_back_to_back_with_one_key_are_published_once(
        self, make_broker: MakeBroker
    ) -> None:
        broker, sink = await bound(make_broker)
        await broker.subscribe("r")
        key = IdempotencyKey("alice", "burst")
        futures = [broker.enqueue_publish("r", b"%d" % i, "a", idempotency=key) for i in range(6)]
        events = [await future for future in futures]
        assert [isinstance(e, Duplicate) for e in events] == [False] + [True] * 5
        assert {e.position for e in events} == {events[0].position}
        await broker.publish("r", b"99", "a")  # a marker: any copy would have come before it
        await sink_has(sink, 2)
        assert [e.data for e in sink.events] == [b"0", b"99"]

    async def test_find_duplicate_answers_a_used_key_and_changes_nothing(
        self, make_broker: MakeBroker
    ) -> None:
        broker, _ = await bound(make_broker)
        key = IdempotencyKey("alice", "k")
        assert await broker.find_duplicate("r", key) is None
        first = await broker.publish("r", b"1", "a", idempotency=key)
        found = await broker.find_duplicate("r", key)
        assert found is not None
        assert found.position == first.position
        assert found.original is not None
        assert found.original.data == b"1"
        assert await broker.find_duplicate("r", IdempotencyKey("bob", "k")) is None
        assert await broker.find_duplicate("r2", key) is None
        assert (await broker.recover("r", None)).position == first.position

    async def test_a_duplicate_of_an_event_no_longer_retained_keeps_its_position(
        self, make_broker: MakeBroker
    ) -> None:
        broker, _ = await bound(make_broker, history_size=2)
        key = IdempotencyKey("alice", "old")
        first = await broker.publish("r", b"1", "a", idempotency=key)
        await publish_n(broker, "r", 3)
        again = await broker.publish("r", b"2", "a", idempotency=key)
        assert isinstance(again, Duplicate)
        assert again.position == first.position
        assert again.original is None
        assert again.data == b"2"  # the retry's own: the first is gone
        assert (await broker.recover("r", None)).position.offset == 4

    async def test_a_key_publishes_again_once_its_window_has_passed(
        self, make_broker: MakeBroker
    ) -> None:
        broker, _ = await bound(make_broker)
        window = broker.idempotency_window
        assert window == 300.0  # the default
        broker.idempotency_window = 0.4
        key = IdempotencyKey("alice", "k")
        first = await broker.publish("r", b"1", "a", idempotency=key)
        await asyncio.sleep(0.7)
        second = await broker.publish("r", b"2", "a", idempotency=key)
        assert not isinstance(second, Duplicate)
        assert second.offset == first.offset + 1
        broker.idempotency_window = window
        third = await broker.publish("r", b"3", "a", idempotency=key)
        assert isinstance(third, Duplicate)
        assert third.position == second.position  # the key names the second one now

    async def test_a_window_of_0_ignores_keys(self, make_broker: MakeBroker) -> None:
        broker, _ = await bound(make_broker)
        broker.idempotency_window = 0
        key = IdempotencyKey("alice", "k")
        events = [await broker.publish("r", b"1", "a", idempotency=key) for _ in range(2)]
        assert [(isinstance(e, Duplicate), e.offset) for e in events] == [(False, 1), (False, 2)]
        assert await broker.find_duplicate("r", key) is None

    async def test_a_key_is_known_to_every_process_of_the_deployment(
        self, make_broker: MakeBroker
    ) -> None:
        a, _ = await bound(make_broker)
        b, _ = await bound(make_broker)
        key = IdempotencyKey("alice", "k")
        first = await a.publish("r", b"1", "x", idempotency=key)
        on_b = await b.publish("r", b"1", "x", idempotency=key)
        if self.shares_control:  # one deployment: one room, one key
            assert isinstance(on_b, Duplicate)
            assert on_b.position == first.position
        else:  # a memory broker is a deployment of its own
            assert not isinstance(on_b, Duplicate)


async def sink_has(sink: RecordingSink, count: int, timeout: float = 5.0) -> None:
    """Wait until ``sink`` holds ``count`` events (brokers may deliver asynchronously)."""
    async with asyncio.timeout(timeout):
        while len(sink.events) < count:
            await asyncio.sleep(0.01)


async def controls_have(sink: RecordingSink, count: int, timeout: float = 5.0) -> None:
    """Wait until ``sink`` holds ``count`` control messages."""
    async with asyncio.timeout(timeout):
        while len(sink.controls) < count:
            await asyncio.sleep(0.01)
