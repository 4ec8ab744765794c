"""Close-code ranges and event encoding. No event loop."""

from __future__ import annotations

import json

from roomcast.protocol.codes import CloseCode, close_reason, should_reconnect
from roomcast.protocol.events import Event, Notice, Position


def test_codes_3000_to_3499_mean_reconnect_and_3500_to_3999_mean_stop() -> None:
    for code in CloseCode:
        if 3000 <= code < 3500:
            assert should_reconnect(code), code
        if 3500 <= code < 4000:
            assert not should_reconnect(code), code
    assert should_reconnect(CloseCode.SERVICE_RESTART)
    assert should_reconnect(CloseCode.GOING_AWAY)
    assert not should_reconnect(CloseCode.TOO_BIG)
    assert not should_reconnect(4000)


def test_every_close_code_has_a_short_reason() -> None:
    for code in CloseCode:
        reason = close_reason(code)
        assert 0 < len(reason.encode()) <= 123


def test_the_documented_numbers_do_not_move() -> None:
    assert [int(c) for c in CloseCode if c >= 3000] == [
        3000,
        3001,
        3002,
        3003,
        3004,
        3500,
        3501,
        3502,
        3503,
    ]


def test_an_event_encodes_once_with_its_raw_data_embedded() -> None:
    event = Event("chat:lobby", "e1", 42, b'{"text":"hi"}', "ann", 1763800000.123)
    frame = event.frame
    assert frame is event.frame  # cached: encoded once however many subscribers
    assert json.loads(frame) == {
        "type": "message",
        "room": "chat:lobby",
        "epoch": "e1",
        "offset": 42,
        "data": {"text": "hi"},
        "sender": "ann",
        "ts": 1763800000.123,
    }
    assert event.position == Position("e1", 42)


def test_a_notice_has_no_position() -> None:
    notice = Notice("join", "r", {"user": "ann", "conn": "c1"})
    assert json.loads(notice.frame) == {"type": "join", "room": "r", "user": "ann", "conn": "c1"}
