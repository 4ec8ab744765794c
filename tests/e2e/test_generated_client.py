"""Acceptance: a client generated from the served AsyncAPI document by a third-party
code generator works against a live server. Modelina (tests/asyncapi/
generate_python.mjs) writes pydantic models from ``/asyncapi.json``; a plain
``websockets`` connection sends a connect, a subscribe and a publish that those
models build and serialize, and reads every reply and event with them."""

from __future__ import annotations

import importlib
import json
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import BaseModel, ValidationError
from websockets.sync.client import ClientConnection, connect

from ..conftest import ServerProcess
from ..protocol.asyncapi_tools import run_tool

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

RECV_TIMEOUT = 10.0
ROOM = "chat:generated"
EVENT_MODELS = {
    "message": "MessageEvent",
    "join": "JoinEvent",
    "leave": "LeaveEvent",
    "reset": "ResetEvent",
    "unsubscribed": "UnsubscribedEvent",
    "deleted": "DeletedEvent",
}


@pytest.fixture
def generated(
    server_factory: Callable[..., ServerProcess], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[str, dict[str, type[BaseModel]]]]:
    """A live server's WebSocket URL as its document gives it, and the models Modelina
    generates from that document, imported from a package of their own: {name: class}."""
    server = server_factory()
    document = tmp_path / "asyncapi.json"
    document.write_bytes(httpx.get(f"{server.http}/asyncapi.json", timeout=10).content)
    served = json.loads(document.read_text())
    ws, channel = served["servers"]["websocket"], served["channels"]["websocket"]
    url = f"{ws['protocol']}://{ws['host']}{ws.get('pathname', '')}{channel['address']}"
    assert url == server.ws
    package = f"generated_{uuid.uuid4().hex[:8]}"
    status, listing = run_tool("generate_python.mjs", document, tmp_path / "client" / package)
    assert status == 0
    assert listing["package"] == package
    monkeypatch.syspath_prepend(str(tmp_path / "client"))
    try:
        models = {
            name: getattr(importlib.import_module(f"{package}.{module}"), name)
            for name, module in listing["models"].items()
        }
        yield url, models
    finally:
        for module in [m for m in sys.modules if m.partition(".")[0] == package]:
            del sys.modules[module]


class GeneratedClient:
    """Requests built by the generated models, frames read by them; nothing else
    of roomcast. Replies and events share one stream: events wait in a list."""

    def __init__(self, socket: ClientConnection, models: dict[str, type[BaseModel]]) -> None:
        self.socket = socket
        self.models = models
        self.events: list[BaseModel] = []

    def send(self, request: BaseModel) -> None:
        # Unset optional fields are None in the models; the protocol leaves them out.
        self.socket.send(request.model_dump_json(exclude_none=True))

    def frame(self) -> tuple[str, dict[str, Any]]:
        """The next frame: its text (for the models) and a peek at its fields."""
        raw = self.socket.recv(timeout=RECV_TIMEOUT)
        assert isinstance(raw, str)
        fields = json.loads(raw)
        assert isinstance(fields, dict)
        return raw, fields

    def read(self, raw: str, model: str) -> BaseModel:
        return self.models[model].model_validate_json(raw)

    def request(self, request: BaseModel, reply_model: str) -> Any:
        """Send ``request``; return its reply read with ``reply_model`` (an error reply
        fails the test, read with the generated ErrorReply)."""
        self.send(request)
        while True:
            raw, frame = self.frame()
            if "type" in frame:
                self.events.append(self.read(raw, EVENT_MODELS[frame["type"]]))
            elif frame.get("id") == getattr(request, "id", None):
                if frame["ok"] is not True:
                    error: Any = self.read(raw, "ErrorReply")
                    pytest.fail(f"{request} answered {error.error.code}: {error.error.message}")
                return self.read(raw, reply_model)

    def event(self, kind: str) -> Any:
        """The first event of ``kind``, read with its generated model."""
        name = EVENT_MODELS[kind]
        while True:
            for event in self.events:
                if type(event).__name__ == name:
                    self.events.remove(event)
                    return event
            raw, frame = self.frame()
            assert "type" in frame, raw  # every request was answered
            self.events.append(self.read(raw, EVENT_MODELS[frame["type"]]))


def test_a_modelina_generated_client_connects_subscribes_publishes_and_reads_its_message(
    generated: tuple[str, dict[str, type[BaseModel]]],
) -> None:
    url, models = generated
    needed = {"Connect", "Subscribe", "Publish", "ConnectReply", "SubscribeReply"}
    needed |= {"PublishReply", "ErrorReply", *EVENT_MODELS.values()}
    assert needed <= models.keys()
    data = {"text": "from a generated client", "n": 7, "tags": ["a", "b"]}

    with connect(url, open_timeout=10) as socket:
        client = GeneratedClient(socket, models)
        connected = client.request(models["Connect"](id=1, name="gen"), "ConnectReply")
        assert (connected.id, connected.result.user, connected.result.version) == (1, "gen", 1)
        assert connected.result.user_id.startswith("anon-")

        subscribed = client.request(models["Subscribe"](id=2, room=ROOM), "SubscribeReply")
        assert (subscribed.id, subscribed.result.room) == (2, ROOM)
        assert (subscribed.result.offset, subscribed.result.replayed) == (0, 0)

        publish = models["Publish"](id=3, room=ROOM, data=data, idempotency_key="gen-000001")
        assert json.loads(publish.model_dump_json(exclude_none=True)) == {
            "op": "publish",
            "id": 3,
            "room": ROOM,
            "data": data,
            "idempotency_key": "gen-000001",
        }
        published = client.request(publish, "PublishReply")
        message = client.event("message")
        join = client.event("join")

    assert published.id == 3
    assert published.result.duplicate is None
    assert (published.result.epoch, published.result.offset) == (subscribed.result.epoch, 1)
    assert type(message).__name__ == "MessageEvent"
    assert (message.room, message.data, message.sender) == (ROOM, data, "gen")
    assert (message.epoch, message.offset) == (published.result.epoch, published.result.offset)
    assert (join.room, join.user, join.conn) == (ROOM, "gen", connected.result.conn)

    # The models are the document's, not empty shells: what it requires, they require.
    with pytest.raises(ValidationError, match="sender"):
        models["MessageEvent"].model_validate({**message.model_dump(), "sender": None})
    with pytest.raises(ValidationError, match="result"):
        models["PublishReply"].model_validate({"id": 3, "ok": True})
