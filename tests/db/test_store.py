"""MessageStore on SQLite and PostgreSQL: rooms, idempotent inserts, paging, JSON payloads."""

from __future__ import annotations

import time
from typing import Any

import orjson
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from roomcast.db.engine import normalize_url
from roomcast.db.store import MessageStore, RoomExists
from roomcast.protocol.events import Event, Position


def event(offset: int, *, room: str = "r", epoch: str = "e1", data: Any = None) -> Event:
    payload = {"n": offset} if data is None else data
    return Event(room, epoch, offset, orjson.dumps(payload), f"user{offset % 3}", 1000.0 + offset)


def positions(events: list[Event]) -> list[tuple[str, int]]:
    return [(e.epoch, e.offset) for e in events]


# -- rooms -----------------------------------------------------------------


async def test_a_created_room_is_read_back_with_its_options(store: MessageStore) -> None:
    start = time.time()
    created = await store.create_room("chat", persist=True, history_size=50, presence=False)
    room = await store.get_room("chat")
    assert room is not None
    assert (room.name, room.persist, room.history_size, room.presence) == ("chat", True, 50, False)
    assert room.created_at == pytest.approx(created.created_at)
    assert start - 1 <= room.created_at <= time.time() + 1


async def test_room_options_have_defaults(store: MessageStore) -> None:
    await store.create_room("plain")
    room = await store.get_room("plain")
    assert room is not None
    assert (room.persist, room.history_size, room.presence) == (False, None, True)


async def test_creating_a_room_twice_raises_room_exists(store: MessageStore) -> None:
    await store.create_room("chat", persist=True)
    with pytest.raises(RoomExists) as info:
        await store.create_room("chat", persist=False)
    assert info.value.name == "chat"
    room = await store.get_room("chat")
    assert room is not None
    assert room.persist is True  # the first one is untouched


async def test_an_unknown_room_is_none(store: MessageStore) -> None:
    assert await store.get_room("nope") is None


async def test_rooms_are_listed_by_name_in_pages_with_the_total(store: MessageStore) -> None:
    for name in ["d", "b", "e", "a", "c"]:
        await store.create_room(name)
    page, total = await store.list_rooms(offset=1, limit=2)
    assert [r.name for r in page] == ["b", "c"]
    assert total == 5
    page, total = await store.list_rooms(offset=4, limit=10)
    assert [r.name for r in page] == ["e"]
    page, total = await store.list_rooms(offset=10, limit=10)
    assert (page, total) == ([], 5)


async def test_any_int_is_an_answer_never_an_overflow(store: MessageStore) -> None:
    # Routers should bound their parameters; the store answers whatever it gets.
    await store.create_room("a")
    await store.insert_many([event(1), event(2)])
    huge = 2**70
    assert await store.list_rooms(offset=huge, limit=huge) == ([], 1)
    assert [r.name for r in (await store.list_rooms(offset=-5, limit=huge))[0]] == ["a"]
    assert (await store.list_rooms(offset=0, limit=-1))[0] == []
    assert [e.offset for e in await store.before("r", huge, huge)] == [1, 2]
    assert await store.before("r", -huge, 10) == []
    assert await store.before("r", None, 0) == []
    assert await store.after("r", "e1", huge, 10) == []
    assert [e.offset for e in await store.after("r", "e1", -huge, huge)] == [1, 2]
    assert await store.after("r", "e1", 0, -3) == []


async def test_deleting_a_room_deletes_its_messages_and_only_its_own(store: MessageStore) -> None:
    await store.create_room("gone", persist=True)
    await store.create_room("kept", persist=True)
    await store.insert_many([event(i, room="gone") for i in range(1, 4)])
    await store.insert_many([event(i, room="kept") for i in range(1, 3)])

    assert await store.delete_room("gone") is True
    assert await store.get_room("gone") is None
    assert await store.count("gone") == 0
    assert await store.before("gone") == []
    assert await store.count("kept") == 2
    assert await store.delete_room("gone") is False
    _, total = await store.list_rooms()
    assert total == 1


# -- inserts ---------------------------------------------------------------


async def test_insert_many_ignores_positions_already_stored(store: MessageStore) -> None:
    assert await store.insert_many([event(i) for i in range(1, 6)]) == 5
    # The same batch again, and one overlapping it: only new positions are added.
    assert await store.insert_many([event(i) for i in range(1, 6)]) == 0
    assert await store.insert_many([event(i) for i in range(4, 9)]) == 3
    assert await store.count("r") == 8
    assert [e.offset for e in await store.before("r", limit=100)] == list(range(1, 9))


async def test_a_duplicate_keeps_the_first_write(store: MessageStore) -> None:
    await store.insert_many([event(1, data="first")])
    await store.insert_many([event(1, data="second")])
    (stored,) = await store.after("r", "e1", 0, 10)
    assert orjson.loads(stored.data) == "first"


async def test_duplicates_inside_one_batch_are_stored_once(store: MessageStore) -> None:
    assert await store.insert_many([event(1), event(2), event(1)]) == 2
    assert await store.count("r") == 2


async def test_the_same_offset_in_another_epoch_or_room_is_a_new_message(
    store: MessageStore,
) -> None:
    assert await store.insert_many([event(1), event(1, epoch="e2"), event(1, room="s")]) == 3


async def test_insert_many_of_nothing_is_zero(store: MessageStore) -> None:
    assert await store.insert_many([]) == 0


async def test_events_come_back_with_every_field(store: MessageStore) -> None:
    original = Event("chat", "ep", 7, b'{"text":"hi"}', "alice", 1712345678.123456)
    await store.insert_many([original])
    (stored,) = await store.after("chat", "ep", 6, 10)
    assert (stored.room, stored.epoch, stored.offset, stored.sender) == ("chat", "ep", 7, "alice")
    assert stored.data == b'{"text":"hi"}'
    assert stored.ts == original.ts
    assert stored.frame == original.frame


# -- paging ----------------------------------------------------------------


async def test_before_pages_backwards_through_the_newest_epoch_oldest_first(
    store: MessageStore,
) -> None:
    await store.insert_many([event(i, epoch="old") for i in range(1, 11)])
    await store.insert_many([event(i, epoch="new") for i in range(1, 8)])

    page = await store.before("r", None, 3)
    assert positions(page) == [("new", 5), ("new", 6), ("new", 7)]
    page = await store.before("r", page[0].offset, 3)
    assert positions(page) == [("new", 2), ("new", 3), ("new", 4)]
    page = await store.before("r", page[0].offset, 3)
    assert positions(page) == [("new", 1)]
    assert await store.before("r", 1, 3) == []


async def test_before_pages_an_older_epoch_when_asked(store: MessageStore) -> None:
    await store.insert_many([event(i, epoch="old") for i in range(1, 11)])
    await store.insert_many([event(i, epoch="new") for i in range(1, 3)])
    assert [e.offset for e in await store.before("r", None, 4, epoch="old")] == [7, 8, 9, 10]
    assert [e.offset for e in await store.before("r", 7, 2, epoch="old")] == [5, 6]


async def test_before_of_an_empty_room_is_empty(store: MessageStore) -> None:
    await store.insert_many([event(1, room="other")])
    assert await store.before("r", None, 10) == []
    assert await store.before("r", 5, 10) == []


async def test_after_reads_one_epoch_forwards_from_an_offset(store: MessageStore) -> None:
    await store.insert_many([event(i, epoch="old") for i in range(1, 11)])
    await store.insert_many([event(i, epoch="new") for i in range(1, 4)])

    assert [e.offset for e in await store.after("r", "old", 7, 10)] == [8, 9, 10]
    assert [e.offset for e in await store.after("r", "old", 0, 3)] == [1, 2, 3]
    assert [e.offset for e in await store.after("r", "new", 1, 10)] == [2, 3]
    assert await store.after("r", "new", 3, 10) == []
    assert await store.after("r", "gone", 0, 10) == []
    assert all(e.epoch == "old" for e in await store.after("r", "old", 0, 100))


async def test_reads_are_in_offset_order_whatever_the_insert_order(store: MessageStore) -> None:
    await store.insert_many([event(5), event(3)])
    await store.insert_many([event(4), event(1), event(2)])
    assert [e.offset for e in await store.after("r", "e1", 0, 10)] == [1, 2, 3, 4, 5]
    assert [e.offset for e in await store.before("r", None, 10)] == [1, 2, 3, 4, 5]
    assert [e.offset for e in await store.before("r", 5, 2)] == [3, 4]


async def test_rooms_do_not_see_each_others_messages(store: MessageStore) -> None:
    await store.insert_many([event(i, room="a") for i in range(1, 4)])
    await store.insert_many([event(i, room="b") for i in range(1, 6)])
    assert [e.room for e in await store.before("a", None, 100)] == ["a"] * 3
    assert [e.offset for e in await store.after("b", "e1", 0, 100)] == [1, 2, 3, 4, 5]


async def test_latest_position_is_that_of_the_newest_message(store: MessageStore) -> None:
    assert await store.latest_position("r") is None
    await store.insert_many([event(i, epoch="old") for i in range(1, 11)])
    assert await store.latest_position("r") == Position("old", 10)
    await store.insert_many([event(i, epoch="new") for i in range(1, 3)])
    assert await store.latest_position("r") == ("new", 2)


# -- JSON payloads ---------------------------------------------------------

JSON_VALUES: list[Any] = [
    None,
    True,
    False,
    0,
    -17,
    2**63 - 1,
    -(2**63),
    1.5,
    1.0,
    -0.0,
    -0.25,
    1e-7,
    1.5e300,
    "",
    "plain",
    "unicode: é ß 中文 😀 \u2028",
    'escapes: " \\ / \n \t \u0000 \u001f',
    [],
    {},
    [1, "two", None, [3.5, [True]], {"k": []}],
    {"z": 1, "a": {"nested": {"deeper": [None, {"x": "ÿ"}]}}, "m": [{}]},
    {"order": "kept", "b": 2, "a": 1},
]


@pytest.mark.parametrize("value", JSON_VALUES, ids=[repr(v)[:24] for v in JSON_VALUES])
async def test_any_json_value_round_trips_exactly(store: MessageStore, value: Any) -> None:
    data = orjson.dumps(value)
    await store.insert_many([Event("r", "e1", 1, data, "u", 1.0)])
    (stored,) = await store.before("r", None, 1)
    assert stored.data == data
    assert orjson.loads(stored.data) == value


async def test_json_that_is_not_canonical_comes_back_as_the_same_value(
    store: MessageStore,
) -> None:
    data = b'{ "b" : [1, 2.50, "\\u00e9"],\n "a": null }'
    await store.insert_many([Event("r", "e1", 1, data, "u", 1.0)])
    (stored,) = await store.before("r", None, 1)
    assert orjson.loads(stored.data) == orjson.loads(data)


async def test_a_store_on_an_engine_made_elsewhere_still_round_trips_json(
    migrated_url: str,
) -> None:
    # An engine not made by create_engine: stdlib json, so payloads go in as values.
    engine: AsyncEngine = create_async_engine(normalize_url(migrated_url))
    try:
        store = MessageStore(engine)
        value = {"b": [1, None, "é"], "a": {"x": 1.5}}
        await store.insert_many([Event("r", "e1", 1, orjson.dumps(value), "u", 1.0)])
        (stored,) = await store.before("r")
        assert orjson.loads(stored.data) == value
    finally:
        await engine.dispose()


# -- health ----------------------------------------------------------------


async def test_ping_is_true_when_the_database_answers(store: MessageStore) -> None:
    assert await store.ping() is True
