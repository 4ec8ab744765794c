"""The AsyncAPI document against tools that are not ours: the official parser
(``@asyncapi/parser`` through tests/asyncapi/validate.mjs) accepts the document a
live server serves, at the root and under a host application's prefix, with no
error or warning, and refuses broken copies of it (so the check can fail); and
every example in the document validates against its message's payload and
headers schemas (``jsonschema``, Draft 7, references resolved in the whole
document), while broken examples do not. The parser does not check examples:
the second half is the one that does."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from jsonschema import Draft7Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT7
from websockets.sync.client import connect

from roomcast.protocol.asyncapi import asyncapi_document

from ..conftest import ServerProcess
from ..e2e.apps import AppFactory, app_factory
from ..e2e.prefix_app import PREFIX
from .asyncapi_tools import parse_document

__all__ = ["app_factory"]  # the fixture, used by name

pytestmark = pytest.mark.timeout(120)

PREFIX_APP = "tests.e2e.prefix_app:app"


def problems(report: dict[str, Any]) -> list[dict[str, Any]]:
    return [d for d in report["diagnostics"] if d["severity"] in ("Error", "Warning")]


def assert_parses_cleanly(document: dict[str, Any], path: Path) -> None:
    status, report = parse_document(document, path)
    assert problems(report) == []
    assert report["valid"] is True
    assert report["version"] == "3.0.0"
    assert status == 0


@pytest.mark.e2e
def test_the_document_a_server_serves_passes_the_official_parser_with_no_error_or_warning(
    server_factory: Callable[..., ServerProcess], tmp_path: Path
) -> None:
    server = server_factory()
    reply = httpx.get(f"{server.http}/asyncapi.json", timeout=10)
    assert reply.status_code == 200
    document = reply.json()
    assert document["servers"]["websocket"]["host"] == f"127.0.0.1:{server.port}"
    assert_parses_cleanly(document, tmp_path / "asyncapi.json")


@pytest.mark.e2e
def test_under_a_hosts_prefix_the_servers_pathname_is_the_prefix_and_the_document_parses(
    app_factory: AppFactory, tmp_path: Path
) -> None:
    server = app_factory(PREFIX_APP, f"{PREFIX}/healthz")
    document = httpx.get(f"{server.http}{PREFIX}/asyncapi.json", timeout=10).json()
    servers = document["servers"]
    assert servers["websocket"]["pathname"] == PREFIX
    assert servers["http"]["pathname"] == PREFIX
    assert_parses_cleanly(document, tmp_path / "asyncapi.json")

    # The address the document gives (server + pathname + channel address) is the socket.
    ws, channel = servers["websocket"], document["channels"]["websocket"]
    url = f"{ws['protocol']}://{ws['host']}{ws['pathname']}{channel['address']}"
    assert url == f"ws://127.0.0.1:{server.port}{PREFIX}/ws"
    with connect(url, open_timeout=10) as socket:
        socket.send(json.dumps({"op": "ping", "id": 1}))
        reply = json.loads(socket.recv(timeout=10))
    assert (reply["id"], reply["ok"]) == (1, True)


def _dangling_message(document: dict[str, Any]) -> None:
    document["operations"]["receiveConnect"]["messages"] = [
        {"$ref": "#/channels/websocket/messages/noSuchMessage"}
    ]


def _message_of_another_channel(document: dict[str, Any]) -> None:
    document["operations"]["receiveConnect"]["messages"] = [
        {"$ref": "#/channels/events/messages/sseMessage"}
    ]


@pytest.mark.parametrize(
    ("breakage", "error"),
    [
        pytest.param(
            _dangling_message,
            ("invalid-ref", "operations.receiveConnect.messages.0.$ref"),
            id="a message that does not exist",
        ),
        pytest.param(
            _message_of_another_channel,
            (
                "asyncapi3-operation-messages-from-referred-channel",
                "operations.receiveConnect.messages.0",
            ),
            id="a message of another channel",
        ),
    ],
)
def test_the_parser_refuses_a_broken_copy_of_the_document(
    breakage: Callable[[dict[str, Any]], None], error: tuple[str, str], tmp_path: Path
) -> None:
    document = asyncapi_document()
    breakage(document)
    status, report = parse_document(document, tmp_path / "broken.json")
    errors = [(d["code"], d["path"]) for d in report["diagnostics"] if d["severity"] == "Error"]
    assert errors == [error]
    assert report["valid"] is False
    assert status == 1


# -- examples against their schemas ------------------------------------------------------

BASE = "https://roomcast.invalid/asyncapi.json"


def validator(document: dict[str, Any], pointer: str) -> Draft7Validator:
    """A Draft 7 validator of the schema at ``pointer`` in ``document``, whose
    ``#/components/schemas/...`` references resolve in the same document."""
    registry: Registry[Any] = Registry().with_resource(BASE, Resource(document, DRAFT7))
    return Draft7Validator({"$ref": f"{BASE}#{pointer}"}, registry=registry)


def example_errors(document: dict[str, Any], name: str, example: dict[str, Any]) -> list[str]:
    """Why ``example`` does not fit message ``name`` (its payload, and its headers when
    the message has a headers schema): one line per error, none when it fits."""
    message = document["components"]["messages"][name]
    checks = [("payload", example.get("payload"))]
    if "headers" in message:
        checks.append(("headers", example.get("headers")))
    errors = []
    for part, value in checks:
        check = validator(document, f"/components/messages/{name}/{part}")
        errors += [f"{part}: {e.message}" for e in check.iter_errors(value)]
    return errors


def test_every_message_has_examples_and_each_fits_its_payload_and_headers_schemas() -> None:
    document = asyncapi_document()
    messages = document["components"]["messages"]
    without = [name for name, message in messages.items() if not message.get("examples")]
    assert without == []
    failures = {
        f"{name}/{example['name']}": errors
        for name, message in messages.items()
        for example in message["examples"]
        if (errors := example_errors(document, name, example))
    }
    assert failures == {}
    with_headers = [name for name, message in messages.items() if "headers" in message]
    assert len(with_headers) == 9  # every SSE event carries its SSE event name (and id)


@pytest.mark.parametrize(
    ("name", "part", "change"),
    [
        pytest.param("messageEvent", "payload", {"offset": "1"}, id="an offset as a string"),
        pytest.param("messageEvent", "payload", {"color": "red"}, id="a field no event has"),
        pytest.param("publish", "payload", {"room": None}, id="a publish to no room"),
        pytest.param("publishReply", "payload", {"ok": False}, id="a reply that is not ok"),
        pytest.param(
            "errorReply",
            "payload",
            {"error": {"code": "oops", "message": "?"}},
            id="an error code that does not exist",
        ),
        pytest.param("sseMessage", "headers", {"event": "join"}, id="the wrong SSE event"),
        pytest.param("sseMessage", "headers", {"id": "no position"}, id="an SSE id of no form"),
    ],
)
def test_a_broken_example_is_refused(name: str, part: str, change: dict[str, Any]) -> None:
    document = asyncapi_document()
    example = copy.deepcopy(document["components"]["messages"][name]["examples"][0])
    assert example_errors(document, name, example) == []
    example[part] = {**example[part], **change}
    errors = example_errors(document, name, example)
    assert errors, f"{name} accepted {example[part]}"
    assert all(error.startswith(f"{part}: ") for error in errors)
