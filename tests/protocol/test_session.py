"""Session rules, driven frame by frame with no event loop."""

from __future__ import annotations

import json

import pytest

from roomcast.protocol.codes import CloseCode, ErrorCode
from roomcast.protocol.errors import (
    FrameTooLarge,
    ProtocolViolation,
    RequestError,
    UnsupportedData,
)
from roomcast.protocol.frames import Publish
from roomcast.protocol.session import Session, SessionLimits, SessionState


def make(**limits: int) -> tuple[Session, set[str]]:
    rooms: set[str] = set()
    return Session(SessionLimits(**limits), rooms), rooms


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
    assert info.value.code is ErrorCode.BAD_REQUEST


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
