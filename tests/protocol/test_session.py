"""Session rules, driven frame by frame with no event loop."""

from __future__ import annotations

import json

import pytest

from roomcast.protocol.codes import CloseCode, ErrorCode
from roomcast.protocol.errors import (
    FrameTooLarge,
    ProtocolViolation,
    RateLimited,
    RequestError,
    UnsupportedData,
)
from roomcast.protocol.frames import Publish
from roomcast.protocol.session import Session, SessionLimits, SessionState


def make(**limits: float) -> tuple[Session, set[str]]:
    rooms: set[str] = set()
    return Session(SessionLimits(**limits), rooms), rooms  # type: ignore[arg-type]


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def frame(**fields: object) -> str:
    return json.dumps(fields)


def test_connect_is_accepted_as_the_first_frame() -> None:
    session, _ = make()
    session.receive_text(frame(op="connect", id=0, name="ann"))
    assert session.state is SessionState.OPEN


def test_connect_after_another_frame_is_a_bad_request() -> None:
    session, _ = make()
    session.receive_text(frame(op="ping", id=1))
    with pytest.raises(RequestError) as info:
        session.receive_text(frame(op="connect", id=2, name="late"))
    assert (info.value.code, info.value.request_id) == (ErrorCode.BAD_REQUEST, 2)


def test_subscribing_twice_to_a_room_is_a_bad_request() -> None:
    session, rooms = make()
    rooms.add("r")
    with pytest.raises(RequestError) as info:
        session.receive_text(frame(op="subscribe", id=1, room="r"))
    assert info.value.code is ErrorCode.BAD_REQUEST
    assert "already" in info.value.message


def test_subscriptions_are_limited_per_connection() -> None:
    session, rooms = make(max_subscriptions=2)
    rooms.update({"a", "b"})
    with pytest.raises(RequestError) as info:
        session.receive_text(frame(op="subscribe", id=1, room="c"))
    assert info.value.code is ErrorCode.LIMIT_EXCEEDED


def test_unsubscribe_without_subscription_is_not_subscribed() -> None:
    session, rooms = make()
    with pytest.raises(RequestError) as info:
        session.receive_text(frame(op="unsubscribe", id=3, room="r"))
    assert (info.value.code, info.value.request_id) == (ErrorCode.NOT_SUBSCRIBED, 3)
    rooms.add("r")
    session.receive_text(frame(op="unsubscribe", id=4, room="r"))


def test_publish_payload_over_the_limit_is_too_large() -> None:
    session, _ = make(max_payload_bytes=10)
    small = session.receive_text(frame(op="publish", id=1, room="r", data="12345678"))
    assert isinstance(small, Publish)
    assert session.payload(small) == b'"12345678"'
    big = session.receive_text(frame(op="publish", id=2, room="r", data="123456789"))
    assert isinstance(big, Publish)
    with pytest.raises(RequestError) as info:
        session.payload(big)
    assert (info.value.code, info.value.request_id) == (ErrorCode.TOO_LARGE, 2)


def test_too_many_malformed_frames_close_with_3502() -> None:
    session, _ = make(max_bad_frames=3)
    for _ in range(2):
        with pytest.raises(RequestError):
            session.receive_text("garbage")
    with pytest.raises(ProtocolViolation) as info:
        session.receive_text("garbage")
    assert info.value.close_code is CloseCode.PROTOCOL_VIOLATION
    assert session.state is SessionState.CLOSED


def test_well_formed_requests_that_fail_rules_do_not_count_as_malformed() -> None:
    session, _ = make(max_bad_frames=2)
    for i in range(5):
        with pytest.raises(RequestError):
            session.receive_text(frame(op="unsubscribe", id=i, room="r"))
    assert session.state is SessionState.OPEN


def test_binary_frames_close_with_1003() -> None:
    session, _ = make()
    with pytest.raises(UnsupportedData) as info:
        session.receive_binary()
    assert info.value.close_code == 1003


def test_frames_over_the_size_limit_close_with_1009() -> None:
    session, _ = make(max_frame_bytes=100)
    with pytest.raises(FrameTooLarge) as info:
        session.receive_text(frame(op="publish", id=1, room="r", data="x" * 200))
    assert info.value.close_code == 1009


def publish(rid: int, room: str = "r") -> str:
    return frame(op="publish", id=rid, room=room, data={"n": rid})


def test_publishes_beyond_the_burst_are_rate_limited_until_tokens_accrue() -> None:
    clock = Clock()
    session = Session(SessionLimits(publish_rate=10, publish_burst=3), set(), clock)
    for rid in range(3):
        session.receive_text(publish(rid))
    with pytest.raises(RequestError) as info:
        session.receive_text(publish(3))
    assert (info.value.code, info.value.request_id) == (ErrorCode.RATE_LIMITED, 3)
    clock.now += 0.15  # one token (and a half) at 10 per second
    session.receive_text(publish(4))
    with pytest.raises(RequestError):
        session.receive_text(publish(5))


def test_a_rate_of_zero_means_no_limit() -> None:
    session = Session(SessionLimits(publish_rate=0, publish_burst=1), set(), Clock())
    for rid in range(1000):
        session.receive_text(publish(rid))


def test_repeated_rate_breaches_close_with_3004_and_other_ops_still_pass_before() -> None:
    clock = Clock()
    limits = SessionLimits(publish_rate=1, publish_burst=1, max_rate_breaches=3)
    session = Session(limits, set(), clock)
    session.receive_text(publish(0))
    for rid in (1, 2):
        with pytest.raises(RequestError):
            session.receive_text(publish(rid))
    session.receive_text(frame(op="ping", id=9))  # not a publish: unaffected
    with pytest.raises(RateLimited) as info:
        session.receive_text(publish(3))
    assert info.value.close_code is CloseCode.RATE_LIMITED
    assert session.state is SessionState.CLOSED


def test_accepted_publishes_take_breaches_back() -> None:
    clock = Clock()
    limits = SessionLimits(publish_rate=1, publish_burst=1, max_rate_breaches=3)
    session = Session(limits, set(), clock)
    for round_ in range(10):  # one breach, then one accepted publish, ten times over
        session.receive_text(publish(2 * round_))
        with pytest.raises(RequestError):
            session.receive_text(publish(2 * round_ + 1))
        clock.now += 1.0
    assert session.rate_breaches == 1
    assert session.state is SessionState.OPEN


def test_rate_breaches_do_not_count_as_bad_frames() -> None:
    limits = SessionLimits(publish_rate=1, publish_burst=1, max_rate_breaches=50, max_bad_frames=2)
    session = Session(limits, set(), Clock())
    session.receive_text(publish(0))
    for rid in range(1, 10):
        with pytest.raises(RequestError):
            session.receive_text(publish(rid))
    assert session.bad_frames == 0


def test_room_names_over_the_configured_length_are_room_invalid() -> None:
    session, _ = make(max_room_length=8)
    session.receive_text(frame(op="subscribe", id=1, room="a" * 8))
    with pytest.raises(RequestError) as info:
        session.receive_text(frame(op="subscribe", id=2, room="a" * 9))
    assert (info.value.code, info.value.request_id) == (ErrorCode.ROOM_INVALID, 2)


def test_repeated_limit_breaches_close_with_3502() -> None:
    session, rooms = make(max_subscriptions=1, max_bad_frames=3)
    rooms.add("a")
    for rid in (1, 2):
        with pytest.raises(RequestError):
            session.receive_text(frame(op="subscribe", id=rid, room=f"x{rid}"))
    with pytest.raises(ProtocolViolation):
        session.receive_text(frame(op="subscribe", id=3, room="x3"))


def test_races_of_a_correct_client_are_not_bad_frames() -> None:
    session, rooms = make(max_bad_frames=2)
    rooms.add("a")
    for rid in range(5):
        with pytest.raises(RequestError):
            session.receive_text(frame(op="subscribe", id=rid, room="a"))
        with pytest.raises(RequestError):
            session.receive_text(frame(op="unsubscribe", id=rid, room="b"))
    assert session.state is SessionState.OPEN


def test_refused_counts_towards_the_bad_frame_limit() -> None:
    session, _ = make(max_bad_frames=2)
    session.refused()
    with pytest.raises(ProtocolViolation):
        session.refused()


def test_refresh_carries_a_token() -> None:
    session, _ = make()
    session.receive_text(frame(op="ping", id=1))
    request = session.receive_text(frame(op="refresh", id=2, token="abc"))
    assert request.op == "refresh"
    with pytest.raises(RequestError) as info:
        session.receive_text(frame(op="refresh", id=3))
    assert info.value.code is ErrorCode.BAD_REQUEST
