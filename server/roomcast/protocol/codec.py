"""Text frames in, requests out; replies and errors in, text frames out.

:func:`decode_request` turns one text frame into a validated request model or
raises :class:`~roomcast.protocol.errors.RequestError` carrying the error code
and the request id (None when the frame had no usable id). It never raises
anything else for any input.
"""

from __future__ import annotations

import json
from typing import Any, cast

import orjson
from pydantic import ValidationError

from .codes import ErrorCode
from .errors import RequestError, RoomcastError
from .frames import MODELS, Publish, Request, is_valid_room

__all__ = ["DataNotEncodable", "decode_request", "encode_data", "encode_error", "encode_reply"]


def _request_id(obj: dict[str, Any]) -> int | None:
    rid = obj.get("id")
    if type(rid) is int:
        return rid
    return None


def _describe(exc: ValidationError) -> str:
    err = exc.errors(include_url=False)[0]
    loc = ".".join(str(part) for part in err["loc"]) or "frame"
    return f"{loc}: {err['msg']}"


def decode_request(text: str | bytes) -> Request:
    """Decode and validate one client frame.

    Raises :class:`RequestError` with ``bad_request`` (not JSON, not an object,
    a field of the wrong type), ``unknown_op`` or ``room_invalid``.
    """
    try:
        obj = orjson.loads(text)
    except orjson.JSONDecodeError:
        raise RequestError(ErrorCode.BAD_REQUEST, "frame is not valid JSON") from None
    if not isinstance(obj, dict):
        raise RequestError(ErrorCode.BAD_REQUEST, "frame must be a JSON object")
    rid = _request_id(obj)
    if "id" in obj and obj["id"] is not None and rid is None:
        raise RequestError(ErrorCode.BAD_REQUEST, "id must be an integer")
    op = obj.get("op")
    if not isinstance(op, str):
        raise RequestError(ErrorCode.BAD_REQUEST, "op is required", rid)
    request: Request | None = _plain_publish(obj) if op == "publish" and _FAST else None
    if request is None:
        model = MODELS.get(op)
        if model is None:
            raise RequestError(ErrorCode.UNKNOWN_OP, f"unknown op {op[:32]!r}", rid)
        try:
            request = cast(Request, model.model_validate(obj))
        except ValidationError as exc:
            raise RequestError(ErrorCode.BAD_REQUEST, _describe(exc), rid) from None
    room = getattr(request, "room", None)
    if room is not None and not is_valid_room(room):
        raise RequestError(
            ErrorCode.ROOM_INVALID,
            "room must be 1-128 characters of letters, digits and _ . : -",
            rid,
        )
    return request


_PUBLISH_FIELDS = frozenset(Publish.model_fields)
_new = object.__new__
_set = object.__setattr__


def _plain_publish(obj: dict[str, Any]) -> Publish | None:
    """``obj`` as ``Publish.model_validate`` makes it, built without running the
    validator, when every field it has is plainly valid: the usual publish. None:
    anything else (a field of another type, an idempotency key), which the
    validator answers, errors included.

    The validator is most of the CPU of decoding a publish, and more when its code
    and schema have gone cold behind a fan-out's socket writes; ``data`` needs no
    check here: whatever orjson decoded is a JSON value. The instance is built the
    way pydantic's ``model_construct`` builds one (which is itself slower than
    validating); :data:`_FAST` says whether the installed pydantic builds equal
    instances that way, checked at import."""
    rid = obj.get("id")
    room = obj.get("room")
    durable = obj.get("durable", False)
    if not (
        (rid is None or type(rid) is int)
        and type(room) is str
        and "data" in obj
        and type(durable) is bool
        and obj.get("idempotency_key") is None
    ):
        return None
    request = _new(Publish)
    _set(
        request,
        "__dict__",
        {
            "op": "publish",
            "id": rid,
            "room": room,
            "data": obj["data"],
            "durable": durable,
            "idempotency_key": None,
        },
    )
    _set(request, "__pydantic_fields_set__", _PUBLISH_FIELDS.intersection(obj))
    _set(request, "__pydantic_extra__", None)
    _set(request, "__pydantic_private__", None)
    return request


def _plain_publish_works() -> bool:
    """Whether :func:`_plain_publish` builds what the validator builds, with the
    installed pydantic (False: every publish is validated)."""
    samples: list[dict[str, Any]] = [
        {"op": "publish", "id": 7, "room": "r", "data": {"a": [1, 2.5, None, True]}},
        {"op": "publish", "room": "r", "data": None, "durable": True, "extra": 1},
        {"op": "publish", "id": None, "room": "r", "data": "x", "idempotency_key": None},
    ]
    try:
        for obj in samples:
            plain = _plain_publish(obj)
            valid = Publish.model_validate(obj)
            if (
                plain is None
                or plain != valid
                or plain.model_fields_set != valid.model_fields_set
                or plain.model_dump() != valid.model_dump()
                or repr(plain) != repr(valid)
            ):
                return False
    except Exception:
        return False
    return True


_FAST = _plain_publish_works()


class DataNotEncodable(RoomcastError, ValueError):
    """A value that is not JSON."""


def encode_data(value: Any) -> bytes:
    """A validated JSON value as the raw bytes kept in events.

    orjson first; values it refuses (integers beyond 64 bits, which JSON allows)
    go through the standard library, which writes them exactly. Raises
    :class:`DataNotEncodable` for anything that is not JSON at all.
    """
    try:
        return orjson.dumps(value)
    except orjson.JSONEncodeError:
        pass
    try:
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()
    except (TypeError, ValueError) as exc:
        raise DataNotEncodable(f"data cannot be encoded: {exc}") from None


def encode_reply(request_id: int | None, result: dict[str, Any]) -> str:
    """``{"id": .., "ok": true, "result": {..}}``"""
    return orjson.dumps({"id": request_id, "ok": True, "result": result}).decode()


def encode_error(request_id: int | None, code: ErrorCode, message: str) -> str:
    """``{"id": .., "ok": false, "error": {"code": .., "message": ..}}``"""
    return orjson.dumps(
        {"id": request_id, "ok": False, "error": {"code": code.value, "message": message}}
    ).decode()
