"""The codec: any text in, a validated request or a RequestError out. No event loop."""

from __future__ import annotations

import json

import pytest

from roomcast.protocol.codec import (
    DataNotEncodable,
    decode_request,
    encode_data,
    encode_error,
    encode_reply,
)
from roomcast.protocol.codes import ErrorCode
from roomcast.protocol.errors import RequestError
from roomcast.protocol.frames import Connect, History, Ping, Publish, Subscribe


def error_of(text: str) -> RequestError:
    with pytest.raises(RequestError) as info:
        decode_request(text)
    return info.value


def test_subscribe_with_since_decodes_to_a_subscribe_request() -> None:
    req = decode_request(
        '{"op": "subscribe", "id": 1, "room": "chat:lobby", "since": {"epoch": "e", "offset": 41}}'
    )
    assert isinstance(req, Subscribe)
    assert (req.id, req.room, req.since is not None and req.since.offset) == (1, "chat:lobby", 41)


def test_publish_keeps_any_json_value_as_data() -> None:
    for data in (None, 1, "x", [1, {"a": True}], {"nested": {"deep": [1.5]}}):
        req = decode_request(json.dumps({"op": "publish", "id": 3, "room": "r", "data": data}))
        assert isinstance(req, Publish)
        assert req.data == data


def test_history_defaults_limit_to_50_and_before_to_latest() -> None:
    req = decode_request('{"op": "history", "id": 4, "room": "r"}')
    assert isinstance(req, History)
    assert (req.limit, req.before) == (50, None)


def test_a_request_without_id_has_id_none() -> None:
    req = decode_request('{"op": "ping"}')
    assert isinstance(req, Ping)
    assert req.id is None


def test_unknown_fields_are_ignored() -> None:
    req = decode_request('{"op": "connect", "id": 0, "name": "ann", "future": 1}')
    assert isinstance(req, Connect)
    assert req.name == "ann"


@pytest.mark.parametrize(
    ("text", "code", "rid"),
    [
        ("not json", ErrorCode.BAD_REQUEST, None),
        ("", ErrorCode.BAD_REQUEST, None),
        ("[1, 2]", ErrorCode.BAD_REQUEST, None),
        ('"subscribe"', ErrorCode.BAD_REQUEST, None),
        ('{"id": 5}', ErrorCode.BAD_REQUEST, 5),
        ('{"op": 7, "id": 5}', ErrorCode.BAD_REQUEST, 5),
        ('{"op": "nope", "id": 6}', ErrorCode.UNKNOWN_OP, 6),
        ('{"op": "subscribe", "id": 7}', ErrorCode.BAD_REQUEST, 7),
        ('{"op": "subscribe", "id": "1", "room": "r"}', ErrorCode.BAD_REQUEST, None),
        ('{"op": "subscribe", "id": true, "room": "r"}', ErrorCode.BAD_REQUEST, None),
        ('{"op": "subscribe", "id": 8, "room": 5}', ErrorCode.BAD_REQUEST, 8),
        (
            '{"op": "subscribe", "id": 8, "room": "r", "since": {"epoch": "e"}}',
            ErrorCode.BAD_REQUEST,
            8,
        ),
        (
            '{"op": "subscribe", "id": 8, "room": "r", "since": {"epoch": "e", "offset": -1}}',
            ErrorCode.BAD_REQUEST,
            8,
        ),
        ('{"op": "subscribe", "id": 9, "room": "has space"}', ErrorCode.ROOM_INVALID, 9),
        ('{"op": "subscribe", "id": 9, "room": ""}', ErrorCode.ROOM_INVALID, 9),
        ('{"op": "subscribe", "id": 9, "room": "a/b"}', ErrorCode.ROOM_INVALID, 9),
        (json.dumps({"op": "subscribe", "id": 9, "room": "x" * 129}), ErrorCode.ROOM_INVALID, 9),
        ('{"op": "publish", "id": 10, "room": "r"}', ErrorCode.BAD_REQUEST, 10),
        ('{"op": "history", "id": 11, "room": "r", "limit": 0}', ErrorCode.BAD_REQUEST, 11),
        ('{"op": "history", "id": 11, "room": "r", "limit": 1001}', ErrorCode.BAD_REQUEST, 11),
        ('{"op": "history", "id": 11, "room": "r", "limit": "5"}', ErrorCode.BAD_REQUEST, 11),
        ('{"op": "history", "id": 11, "room": "r", "before": 0}', ErrorCode.BAD_REQUEST, 11),
        ('{"op": "connect", "id": 12, "name": ""}', ErrorCode.BAD_REQUEST, 12),
        (json.dumps({"op": "connect", "id": 12, "name": "n" * 65}), ErrorCode.BAD_REQUEST, 12),
    ],
)
def test_malformed_frames_raise_request_error_with_code_and_id(
    text: str, code: ErrorCode, rid: int | None
) -> None:
    err = error_of(text)
    assert err.code is code
    assert err.request_id == rid
    assert err.message


def test_room_names_accept_letters_digits_and_punctuation_up_to_128() -> None:
    for room in ("a", "chat:lobby", "A_b.c-d:e:f", "9" * 128):
        assert isinstance(decode_request(json.dumps({"op": "presence", "room": room})), object)


def test_replies_and_errors_encode_to_the_documented_shapes() -> None:
    assert json.loads(encode_reply(3, {"offset": 1})) == {
        "id": 3,
        "ok": True,
        "result": {"offset": 1},
    }
    assert json.loads(encode_error(None, ErrorCode.UNKNOWN_OP, "m")) == {
        "id": None,
        "ok": False,
        "error": {"code": "unknown_op", "message": "m"},
    }


def test_integers_beyond_64_bits_are_carried_exactly() -> None:
    assert encode_data(2**64 - 1) == b"18446744073709551615"
    assert encode_data({"n": 2**70, "s": "é"}) == b'{"n":1180591620717411303424,"s":"\xc3\xa9"}'


def test_what_is_not_json_cannot_be_encoded_and_says_so() -> None:
    with pytest.raises(DataNotEncodable):
        encode_data({"n": object()})
