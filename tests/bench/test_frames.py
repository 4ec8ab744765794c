"""Frames the bench sends, and reading the ones it receives without a JSON decode."""

from __future__ import annotations

import json
import time

from roomcast.bench.frames import (
    data_pad,
    message_frame,
    parse_message,
    parse_reply,
    publish_frame,
    sync_frame,
)
from roomcast.bench.sse import split_events


def test_a_roomcast_message_event_gives_its_offset_and_send_time() -> None:
    frame = (
        b'{"type":"message","room":"bench","epoch":"jNeHO3FD","offset":42,'
        b'"data":{"bench_t":1795324714.25,"seq":3,"pad":"xx"},"sender":"anon","ts":1.0}'
    )
    assert parse_message(frame) == (42, 1795324714.25)


def test_the_servers_own_event_frames_take_the_one_regex_path() -> None:
    from roomcast.bench.frames import _EVENT
    from roomcast.protocol.events import encode_event_frame

    data = b'{"bench_t":1795324714.250001,"seq":9,"pad":"xxxx"}'
    for room in ("bench", "a.b:c-d_9", "r" * 100):
        frame = encode_event_frame(room, "jNeHO3FD", 123_456, data, "u-1", 2.5).encode()
        assert _EVENT(frame) is not None, frame  # the fast path: roomcast's own layout
        assert parse_message(frame) == (123_456, 1795324714.250001)
    relayed = message_frame(8, "bench", 3.25, "").encode()  # what broadcast peers echo
    assert _EVENT(relayed) is not None
    assert parse_message(relayed) == (8, 3.25)


def test_key_order_does_not_matter() -> None:
    frame = json.dumps(
        {"data": {"pad": "", "bench_t": 2.5}, "offset": 7, "type": "message"},
        separators=(",", ":"),
    ).encode()
    assert parse_message(frame) == (7, 2.5)


def test_a_message_not_published_by_the_bench_has_no_send_time() -> None:
    assert parse_message(b'{"type":"message","room":"r","offset":3,"data":{"text":"hi"}}') == (
        3,
        0.0,
    )


def test_other_frames_are_not_messages() -> None:
    for frame in (
        b'{"type":"join","room":"r","user":"a","conn":"b"}',
        b'{"id":1,"ok":true,"result":{"epoch":"e","offset":5}}',
        b'{"type":"ready"}',
        sync_frame("bench", 1).encode(),
        b"not json",
    ):
        assert parse_message(frame) is None


def test_the_frames_the_bench_builds_are_json_and_read_back() -> None:
    pad = data_pad(100)
    publish = json.loads(publish_frame(12345, "bench", time.time(), pad))
    assert publish["op"] == "publish"
    assert publish["id"] == 12345
    assert publish["room"] == "bench"
    assert 95 <= len(json.dumps(publish["data"], separators=(",", ":"))) <= 105
    relayed = message_frame(9, "bench", 1234.5, pad)
    assert json.loads(relayed)["offset"] == 9
    assert parse_message(relayed.encode()) == (9, 1234.5)


def test_replies_are_parsed_with_their_result_or_error_code() -> None:
    ok = parse_reply(b'{"id":3,"ok":true,"result":{"epoch":"e","offset":12}}')
    assert ok is not None
    assert ok.id == 3
    assert ok.ok
    assert ok.result["offset"] == 12
    refused = parse_reply(
        b'{"id":4,"ok":false,"error":{"code":"rate_limited","message":"slow down"}}'
    )
    assert refused is not None
    assert not refused.ok
    assert refused.error == "rate_limited"
    assert parse_reply(b'{"type":"message","offset":1}') is None


def test_sse_events_split_on_blank_lines_with_lf_or_crlf() -> None:
    body = (
        b"retry: 2000\r\n\r\n"
        b'event: subscribed\r\nid: e:0\r\ndata: {"offset":0}\r\n\r\n'
        b": ping\r\n\r\n"
        b"data: line one\ndata: line two\n\n"
        b'event: message\nid: e:1\ndata: {"offset":1'
    )
    events, rest = split_events(body)
    assert events == [(b"subscribed", b'{"offset":0}'), (b"message", b"line one\nline two")]
    more, rest = split_events(rest + b"}\n\n")
    assert more == [(b"message", b'{"offset":1}')]
    assert rest == b""


def test_a_crlf_split_across_reads_still_ends_the_event() -> None:
    events, rest = split_events(b"data: x\r\n\r")
    assert events == []
    events, rest = split_events(rest + b"\n")
    assert events == [(b"message", b"x")]
