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
from .frames import MODELS, Request, is_valid_room

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
