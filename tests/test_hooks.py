"""The hook runner: how an application's hooks refuse, transform, fail and time out."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest
from fastapi import HTTPException

from roomcast import ErrorCode, Hooks, Principal, Refused, RequestError
from roomcast.hooks import HookRunner

ANN = Principal("ann", "Ann", subscribe="*", publish="*")


def runner(**hooks: Any) -> HookRunner:
    return HookRunner(Hooks(**hooks), timeout=0.5)


async def test_no_hooks_change_nothing() -> None:
    plain = HookRunner(None, timeout=1)
    await plain.connect(ANN)
    await plain.subscribe(ANN, "r")
    assert await plain.publish(ANN, "r", {"a": 1}) is None
    await plain.disconnect(ANN)
    assert not plain.on_publish


async def test_refused_keeps_its_code_and_message_and_takes_the_request_id() -> None:
    async def on_subscribe(principal: Principal, room: str) -> None:
        raise Refused("members only", code="rate_limited")

    with pytest.raises(RequestError) as refused:
        await runner(on_subscribe=on_subscribe).subscribe(ANN, "r", 7)
    assert (refused.value.code, refused.value.message) == (ErrorCode.RATE_LIMITED, "members only")
    assert refused.value.request_id == 7


async def test_refused_means_forbidden_unless_told_otherwise() -> None:
    async def on_connect(principal: Principal) -> None:
        raise Refused()

    with pytest.raises(RequestError) as refused:
        await runner(on_connect=on_connect).connect(ANN)
    assert refused.value.code is ErrorCode.FORBIDDEN


@pytest.mark.parametrize(
    ("status", "code"),
    [
        (401, ErrorCode.UNAUTHORIZED),
        (403, ErrorCode.FORBIDDEN),
        (429, ErrorCode.RATE_LIMITED),
        (503, ErrorCode.UNAVAILABLE),
        (500, ErrorCode.INTERNAL),
        (418, ErrorCode.FORBIDDEN),
    ],
)
async def test_an_http_exception_refuses_with_the_code_of_its_status(
    status: int, code: ErrorCode
) -> None:
    async def on_publish(principal: Principal, room: str, data: Any) -> Any:
        raise HTTPException(status, "nope")

    with pytest.raises(RequestError) as refused:
        await runner(on_publish=on_publish).publish(ANN, "r", 1)
    assert (refused.value.code, refused.value.message) == (code, "nope")


async def test_a_hook_that_raises_refuses_with_internal_and_is_logged_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def on_publish(principal: Principal, room: str, data: Any) -> Any:
        raise KeyError("bug")

    with caplog.at_level(logging.ERROR, "roomcast.hooks"), pytest.raises(RequestError) as failed:
        await runner(on_publish=on_publish).publish(ANN, "r", 1, 3)
    assert (failed.value.code, failed.value.message, failed.value.request_id) == (
        ErrorCode.INTERNAL,
        "internal error",
        3,
    )
    records = [r for r in caplog.records if r.name == "roomcast.hooks"]
    assert len(records) == 1
    assert records[0].exc_info is not None  # the traceback, once


async def test_a_hook_past_the_timeout_refuses_with_unavailable() -> None:
    async def on_subscribe(principal: Principal, room: str) -> None:
        await asyncio.sleep(5)

    with pytest.raises(RequestError) as slow:
        await runner(on_subscribe=on_subscribe).subscribe(ANN, "r")
    assert slow.value.code is ErrorCode.UNAVAILABLE


async def test_on_publish_returns_none_to_keep_the_data_or_a_value_to_replace_it() -> None:
    async def on_publish(principal: Principal, room: str, data: Any) -> Any:
        return None if data == "keep" else {"was": data, "by": principal.user}

    hooks = runner(on_publish=on_publish)
    assert await hooks.publish(ANN, "r", "keep") is None
    assert await hooks.publish(ANN, "r", "x") == b'{"was":"x","by":"ann"}'


async def test_on_publish_returning_something_not_json_refuses_with_internal() -> None:
    async def on_publish(principal: Principal, room: str, data: Any) -> Any:
        return object()

    with pytest.raises(RequestError) as failed:
        await runner(on_publish=on_publish).publish(ANN, "r", 1)
    assert failed.value.code is ErrorCode.INTERNAL


async def test_on_disconnect_never_raises(caplog: pytest.LogCaptureFixture) -> None:
    async def on_disconnect(principal: Principal) -> None:
        raise RuntimeError("bug")

    with caplog.at_level(logging.ERROR, "roomcast.hooks"):
        await runner(on_disconnect=on_disconnect).disconnect(ANN)
    assert len(caplog.records) == 1


def test_a_principal_takes_lists_strings_or_patterns_and_defaults_its_name() -> None:
    ann = Principal("ann", subscribe=["chat:*", "dm:ann"], publish="chat:*")
    assert ann.name == "ann"
    assert ann.subscribe.matches("dm:ann")
    assert not ann.subscribe.matches("dm:bob")
    assert ann.publish.matches("chat:x")
    assert not ann.publish.matches("dm:ann")
    assert ann == Principal("ann", "ann", ann.subscribe, ["chat:*"])
    nobody = Principal("x")
    assert not nobody.subscribe.matches("r")
    assert not nobody.publish.matches("r")
    with pytest.raises(ValueError, match="non-empty"):
        Principal("")


async def test_on_publish_may_not_grow_the_data_past_the_payload_limit() -> None:
    async def on_publish(principal: Principal, room: str, data: Any) -> Any:
        return "x" * 200

    hooks = HookRunner(Hooks(on_publish=on_publish), timeout=1, max_payload_bytes=100)
    with pytest.raises(RequestError) as refused:
        await hooks.publish(ANN, "r", "small", 4)
    assert (refused.value.code, refused.value.request_id) == (ErrorCode.TOO_LARGE, 4)
