"""The codec: any text in, a validated request or a RequestError out. No event loop."""

from __future__ import annotations

import json
from typing import Any

import pytest
from pydantic import ValidationError

from roomcast.protocol import codec
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


PUBLISH_VARIANTS: list[dict[str, Any]] = [
    {"op": "publish", "id": 1, "room": "chat", "data": {"text": "hi", "n": [1, 2.5, None]}},
    {"op": "publish", "room": "chat", "data": None},
    {"op": "publish", "id": None, "room": "a:b", "data": "x", "durable": True},
    {"op": "publish", "id": 2, "room": "chat", "data": 1, "durable": False, "other": {}},
    {"op": "publish", "id": 3, "room": "chat", "data": 1, "idempotency_key": None},
    {"op": "publish", "id": 4, "room": "chat", "data": 1, "idempotency_key": "k-1"},
    {"op": "publish", "id": 5, "room": "chat", "data": 1, "idempotency_key": "has space"},
    {"op": "publish", "id": 6, "room": "chat", "data": 1, "idempotency_key": ""},
    {"op": "publish", "id": 7, "room": "chat", "data": 1, "idempotency_key": 5},
    {"op": "publish", "id": 8, "room": "chat"},  # no data
    {"op": "publish", "id": 9, "room": 5, "data": 1},
    {"op": "publish", "id": 10, "room": "bad room", "data": 1},
    {"op": "publish", "id": 11, "room": "", "data": 1},
    {"op": "publish", "id": 12, "room": "x" * 129, "data": 1},
    {"op": "publish", "id": 13, "data": 1},  # no room
    {"op": "publish", "id": True, "room": "chat", "data": 1},
    {"op": "publish", "id": 1.5, "room": "chat", "data": 1},
    {"op": "publish", "id": "1", "room": "chat", "data": 1},
    {"op": "publish", "id": 14, "room": "chat", "data": 1, "durable": 1},
    {"op": "publish", "id": 15, "room": "chat", "data": 1, "durable": None},
    {"op": "publish", "id": 16, "room": "chat", "data": 1, "durable": "true"},
    {"op": "publish", "id": 2**70, "room": "chat", "data": 1},
]


def decoded(frame: str) -> tuple[str, Any]:
    try:
        request = decode_request(frame)
    except RequestError as exc:
        return "error", (exc.code, exc.message, exc.request_id)
    return "request", (type(request), request.model_dump(), request.model_fields_set, request)


@pytest.mark.parametrize("obj", PUBLISH_VARIANTS, ids=lambda obj: repr(obj)[:60])
def test_a_publish_decodes_as_the_validator_decodes_it(
    obj: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    frame = json.dumps(obj)
    fast = decoded(frame)
    monkeypatch.setattr(codec, "_FAST", False)
    assert decoded(frame) == fast


def test_a_plain_publish_is_not_run_through_the_validator(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert codec._FAST  # the installed pydantic builds equal instances the plain way
    calls: list[Any] = []
    validate = Publish.model_validate
    monkeypatch.setattr(Publish, "model_validate", lambda obj: calls.append(obj) or validate(obj))
    request = decode_request('{"op":"publish","id":1,"room":"r","data":{"a":1}}')
    assert isinstance(request, Publish)
    assert request.data == {"a": 1}
    assert calls == []
    with pytest.raises(ValidationError):  # frozen, as validated ones are
        request.room = "other"  # type: ignore[misc]
    decode_request('{"op":"publish","id":1,"room":"r","data":1,"idempotency_key":"k"}')
    assert len(calls) == 1  # a key: the validator checks its pattern


def test_a_pydantic_that_builds_instances_otherwise_turns_the_plain_way_off(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert codec._plain_publish_works()
    monkeypatch.setattr(codec, "_set", lambda obj, name, value: None)  # builds nothing
    assert not codec._plain_publish_works()
