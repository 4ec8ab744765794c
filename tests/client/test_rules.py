"""roomcast.client's rules without a server: positions and duplicates, the reconnect
decision, backoff, pending requests and their bound, request fields, buffers."""

from __future__ import annotations

import asyncio

import pytest

from roomcast.client import (
    Client,
    ClientOptions,
    ConnectionState,
    Message,
    Position,
    QueueFull,
    Recovered,
    RequestRefused,
    RequestTimeout,
    Reset,
    SubscribeResult,
    backoff_delay,
)
from roomcast.client.events import Session
from roomcast.client.position import RoomPosition
from roomcast.client.reconnect import give_up
from roomcast.client.requests import PendingRequests, request_fields
from roomcast.client.sse import parse_event_id
from roomcast.client.state import can_move
from roomcast.client.subscription import Subscription
from roomcast.client.tokens import refresh_delay
from roomcast.protocol.codes import ErrorCode, should_reconnect
from roomcast.protocol.frames import History, Publish, Subscribe


def message(offset: int, epoch: str = "e1", room: str = "r") -> dict[str, object]:
    return {"type": "message", "room": room, "epoch": epoch, "offset": offset,
            "data": offset, "sender": "s", "ts": 1.0}  # fmt: skip


# -- positions ----------------------------------------------------------------------------


def test_a_message_at_or_below_the_position_in_the_same_epoch_is_a_duplicate() -> None:
    position = RoomPosition()
    assert position.since is None
    assert position.advance("e1", 1)
    assert position.advance("e1", 3)
    assert not position.advance("e1", 3)
    assert not position.advance("e1", 2)
    assert position.since == Position("e1", 3)


def test_a_message_of_another_epoch_is_new_whatever_its_offset() -> None:
    position = RoomPosition(Position("e1", 10))
    assert position.advance("e2", 1)
    assert position.since == Position("e2", 1)


async def test_a_subscription_drops_duplicates_and_yields_each_position_once() -> None:
    sub = Subscription(Client("ws://127.0.0.1:9/ws"), "r", None, max_buffer=100)
    sub.live = True
    for offset in (1, 2, 2, 1, 3, 3):
        sub.deliver(message(offset))
    sub.end()
    assert [e.offset async for e in sub if isinstance(e, Message)] == [1, 2, 3]


async def test_a_full_buffer_drops_events_and_yields_one_overflow_reset_at_the_last_dropped(
) -> None:  # fmt: skip
    sub = Subscription(Client("ws://127.0.0.1:9/ws"), "r", None, max_buffer=3)
    for offset in range(1, 8):  # 4..7 do not fit
        sub.deliver(message(offset))
    first = [await anext(sub) for _ in range(4)]
    assert [getattr(e, "offset", None) for e in first] == [1, 2, 3, 7]
    assert first[3] == Reset("r", "e1", 7, "overflow")
    sub.deliver(message(8))
    sub.end()
    assert [e async for e in sub] == [Message("r", "e1", 8, 8, "s", 1.0)]


async def test_a_resume_yields_recovered_or_reset_and_a_reset_moves_the_position() -> None:
    sub = Subscription(Client("ws://127.0.0.1:9/ws"), "r", Position("e1", 4), max_buffer=10)
    sub.subscribed_with(SubscribeResult("r", "e1", 6, True, 2), Position("e1", 4))
    sub.subscribed_with(SubscribeResult("r", "e2", 0, False, 0), Position("e1", 6))
    assert sub.position == Position("e2", 0)
    sub.deliver({"type": "reset", "room": "r", "epoch": "e3", "offset": 5})
    assert sub.position == Position("e3", 5)
    sub.end()
    assert [e async for e in sub] == [
        Recovered("r", Position("e1", 4), "e1", 6, 2),
        Reset("r", "e2", 0, "not_recovered"),
        Reset("r", "e3", 5, "server"),
    ]


# -- reconnecting -------------------------------------------------------------------------


@pytest.mark.parametrize("code", [*range(1000, 1016), 1006, *range(3000, 3010), 3499, 3500,
                                  *range(3500, 3510), 3999, 4000, 4999])  # fmt: skip
def test_close_codes_mean_what_the_protocol_table_says(code: int) -> None:
    stop = give_up(code, "why", None, renewable=False)
    if code == 3003:
        assert stop is not None  # the same token would be refused again
        assert give_up(code, "why", None, renewable=True) is None
    else:
        assert (stop is None) == should_reconnect(code)
    if stop is not None:
        assert stop.close_code == code


@pytest.mark.parametrize(
    ("status", "renewable", "stops"),
    [(400, False, True), (401, False, True), (401, True, False), (403, True, True),
     (404, False, True), (408, False, False), (422, False, True), (429, False, False),
     (500, False, False), (502, False, False), (503, True, False)],
)  # fmt: skip
def test_a_refused_handshake_stops_on_client_errors_and_retries_the_rest(
    status: int, renewable: bool, stops: bool
) -> None:
    stop = give_up(None, f"HTTP {status}", status, renewable=renewable)
    assert (stop is not None) == stops
    if stop is not None:
        assert stop.status == status


def test_backoff_is_full_jitter_under_an_exponential_ceiling() -> None:
    assert backoff_delay(0, 0.5, 15, rand=lambda: 1.0) == 0.5
    assert backoff_delay(3, 0.5, 15, rand=lambda: 1.0) == 4.0
    assert backoff_delay(10, 0.5, 15, rand=lambda: 1.0) == 15
    assert backoff_delay(10_000, 0.5, 15, rand=lambda: 1.0) == 15
    assert backoff_delay(5, 0.5, 15, rand=lambda: 0.0) == 0
    delays = {backoff_delay(4, 0.5, 15) for _ in range(50)}
    assert len(delays) > 1
    assert all(0 <= d <= 8 for d in delays)


def test_states_move_only_along_their_transitions() -> None:
    S = ConnectionState
    assert can_move(S.IDLE, S.CONNECTING)
    assert can_move(S.RECONNECTING, S.RESUMED)
    assert can_move(S.FAILED, S.CLOSED)
    assert not can_move(S.CONNECTED, S.RESUMED)  # resumed only after a reconnect
    assert not can_move(S.CLOSED, S.CONNECTING)
    assert not can_move(S.FAILED, S.RECONNECTING)


def test_a_token_is_renewed_ahead_of_expiry_or_at_half_a_short_life() -> None:
    assert refresh_delay(1000.0, 30, now=0.0) == 970.0
    assert refresh_delay(10.0, 30, now=0.0) == 5.0
    assert refresh_delay(5.0, 30, now=10.0) == 0.0


# -- requests -----------------------------------------------------------------------------


async def test_pending_requests_are_bounded_and_time_out() -> None:
    pending = PendingRequests(max_pending=2)
    first = pending.new("ping", {}, 0.05)
    pending.new("ping", {}, 5)
    with pytest.raises(QueueFull):
        pending.new("ping", {}, 5)
    pending.new("ping", {}, 5, internal=True)  # the client's own are not counted
    with pytest.raises(RequestTimeout):
        await first.future
    await asyncio.sleep(0)  # the done callback runs
    assert len(pending) == 1
    pending.new("ping", {}, 5)  # there is room again


async def test_a_lost_connection_keeps_unsent_and_keyed_requests_and_fails_the_rest() -> None:
    pending = PendingRequests(max_pending=10)
    outbox: asyncio.Queue[object] = asyncio.Queue()
    keyed = pending.new("publish", {"room": "r", "data": 1, "idempotency_key": "k"}, 5,
                        resendable=True)  # fmt: skip
    bare = pending.new("publish", {"room": "r", "data": 2}, 5)
    unsent = pending.new("history", {"room": "r"}, 5)
    for request in (keyed, bare, unsent):
        pending.submit(request)  # not connected: waiting
    assert pending.attach(outbox, [], "alice") == []  # type: ignore[arg-type]
    keyed.sent = bare.sent = True  # the writer wrote these two, not the third
    assert pending.detach("alice") == [bare]
    assert keyed.sent_as == "alice"
    # The next connection: the same user gets the keyed one again, then the unsent one.
    again: asyncio.Queue[object] = asyncio.Queue()
    assert pending.attach(again, [], "alice") == []  # type: ignore[arg-type]
    assert [again.get_nowait(), again.get_nowait()] == [keyed, unsent]
    assert pending.resent == 1
    # Under another user's scope the server could not tell a repeat: refused.
    keyed.sent = True
    pending.detach("alice")
    assert pending.attach(asyncio.Queue(), [], "bob") == [keyed]  # type: ignore[arg-type]


def test_anonymous_sessions_share_one_idempotency_scope_as_on_the_server() -> None:
    anon = [Session("c", "ann", f"anon-{n}", None, "n", 1, True) for n in ("1a2b3c", "4d5e6f")]
    assert anon[0].idempotency_scope == anon[1].idempotency_scope
    assert anon[0].idempotency_scope != "anon-1a2b3c"
    # The server says who is anonymous: a host's principal named anon-... with no expiry is not.
    named = Session("c", "ann", "anon-1a2b3c", None, "n", 1, False)
    assert named.idempotency_scope == "anon-1a2b3c"
    # A server from before the field: no expiry and an anon- id is taken as anonymous.
    old = {"conn": "c", "user": "a", "user_id": "anon-1a2b3c", "expires": None, "node": "n"}
    assert Session.of(old).anonymous
    assert not Session.of({**old, "expires": 1.0e10}).anonymous


def test_request_fields_come_from_the_protocols_frame_models() -> None:
    fields = request_fields(Publish, "publish", room="r", data=None, durable=None,
                            idempotency_key="k-1")  # fmt: skip
    assert fields == {"room": "r", "data": None, "idempotency_key": "k-1"}
    assert request_fields(History, "history", room="r", limit=50, before=None) == {"room": "r"}
    since = {"epoch": "e", "offset": 3}
    assert request_fields(Subscribe, "subscribe", room="r", since=since)["since"] == since
    with pytest.raises(ValueError, match="limit"):
        request_fields(History, "history", room="r", limit=0)
    with pytest.raises(ValueError, match="offset"):
        request_fields(Subscribe, "subscribe", room="r", since={"epoch": "e", "offset": -1})


def test_an_error_code_this_client_does_not_know_is_kept_as_sent() -> None:
    known = RequestRefused("publish", "forbidden", "no")
    assert known.code is ErrorCode.FORBIDDEN
    assert "publish refused: forbidden: no" in str(known)
    newer = RequestRefused("publish", "brand_new", "?")
    assert newer.code is ErrorCode.INTERNAL
    assert newer.raw_code == "brand_new"


async def test_invalid_arguments_raise_value_error_before_anything_is_sent() -> None:
    client = Client("ws://127.0.0.1:9/ws")
    client._runner = asyncio.get_running_loop().create_task(asyncio.sleep(0))  # "started"
    with pytest.raises(ValueError, match="room"):
        await client.publish("bad room", 1)
    with pytest.raises(ValueError, match="idempotency_key"):
        await client.publish("r", 1, idempotency_key="has space")
    with pytest.raises(ValueError, match="limit"):
        await client.history("r", limit=5000)
    with pytest.raises(ValueError, match="max_pending"):
        ClientOptions(max_pending=0)
    assert client.pending == 0


def test_an_event_id_names_one_position_per_room() -> None:
    assert parse_event_id("ep:4", ["a"]) == {"a": Position("ep", 4)}
    assert parse_event_id("a=e1:3;b=e:2:7;zz=x:1", ["a", "b"]) == {
        "a": Position("e1", 3),
        "b": Position("e:2", 7),
    }
    assert parse_event_id("garbage", ["a", "b"]) == {}
