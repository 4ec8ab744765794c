"""The AsyncAPI document as the tests' oracle for what the server sends.

:class:`Contract` reads ``asyncapi_document()`` (never the pydantic models behind it)
and answers, for one frame, which message of the document it is and what is wrong
with it: a WebSocket frame with ``"type"`` must be that event's message, one with
``"ok"`` a reply (``errorReply`` when ``ok`` is false; the reply of the request's op
when the op is known, else any reply); an SSE event must be the message whose
``headers`` name its ``event``, with a matching ``id``. Anything else is a frame the
document does not describe. Schemas are checked with jsonschema's Draft 7 validator,
``$ref`` resolved inside the document.

:class:`Tap` records what tests receive: it wraps ``websockets``' client connections
(asyncio and sync: ``recv``, and ``send`` to learn each request id's op), httpx's
``Response.aiter_lines`` on ``text/event-stream`` responses, and a browser page's
WebSockets (:meth:`Tap.watch_page`). That covers tests/e2e/client.py,
tests/e2e/sse_client.py, roomcast.testing's ``connect()``, roomcast.client (WebSocket
and SSE), and raw ``websockets`` use. Frames are only recorded while a test runs and
are checked when it ends (tests/conftest.py's autouse fixture), so checking costs
the test no latency. A port given to :meth:`Tap.not_roomcast` (the protocol stub,
which sends what a test asks for) is not checked.
"""

from __future__ import annotations

import functools
import json
import urllib.parse
from collections import Counter, deque
from collections.abc import AsyncIterator, Callable, Hashable
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from jsonschema import Draft7Validator
from referencing import Registry
from referencing.jsonschema import DRAFT7
from websockets.asyncio.client import ClientConnection
from websockets.sync.client import ClientConnection as SyncClientConnection

from roomcast.protocol.asyncapi import asyncapi_document

__all__ = ["Contract", "Tap", "Verdict", "contract", "install", "current", "parse_sse"]

URI = "urn:roomcast:asyncapi"
MAX_SHOWN = 300  # characters of a frame shown in a failure


@dataclass(frozen=True)
class Verdict:
    """Which message of the document a frame is (None: none), and what is wrong."""

    message: str | None
    problems: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return self.message is not None and not self.problems


def _pointer(*parts: str) -> str:
    return "".join("/" + p.replace("~", "~0").replace("/", "~1") for p in parts)


class Contract:
    """What the document says the server sends (see the module docstring)."""

    def __init__(self, document: dict[str, Any]) -> None:
        self.document = document
        self._registry: Registry[Any] = Registry().with_resource(
            URI, DRAFT7.create_resource(document)
        )
        self._validators: dict[str, Draft7Validator] = {}
        ws = self._channel_with_address("/ws")
        operations = document["operations"]
        #: op -> the message pointer of its request, and of its operation's replies.
        self.requests: dict[str, str] = {}
        self.replies: dict[str, list[str]] = {}
        #: event type -> message pointer (the websocket channel's sent messages).
        self.events: dict[str, str] = {}
        for operation in operations.values():
            if operation["channel"] != {"$ref": f"#/channels/{ws}"}:
                continue
            messages = [self.resolve(m) for m in operation["messages"]]
            if operation["action"] == "receive":
                (pointer, request), *_ = messages
                op = self.resolve(request["payload"])[1]["properties"]["op"]["const"]
                self.requests[op] = pointer
                self.replies[op] = [self.resolve(m)[0] for m in operation["reply"]["messages"]]
            else:
                for pointer, message in messages:
                    schema = self.resolve(message["payload"])[1]
                    self.events[schema["properties"]["type"]["const"]] = pointer
        self.any_reply = list(dict.fromkeys(p for ps in self.replies.values() for p in ps))
        #: SSE event name -> message pointer (every SSE channel's messages).
        self.sse: dict[str, str] = {}
        for name, channel in document["channels"].items():
            if name == ws:
                continue
            for ref in channel["messages"].values():
                pointer, message = self.resolve(ref)
                event = message["headers"]["properties"]["event"]["const"]
                if self.sse.setdefault(event, pointer) != pointer:
                    raise ValueError(f"two SSE messages for event {event!r}")

    def _channel_with_address(self, address: str) -> str:
        (name,) = (n for n, c in self.document["channels"].items() if c["address"] == address)
        return str(name)

    def resolve(self, node: Any, pointer: str = "") -> tuple[str, Any]:
        """Follow local ``$ref``\\ s from ``node`` (at ``pointer``): (pointer, node)."""
        while isinstance(node, dict) and "$ref" in node:
            ref = node["$ref"]
            if not ref.startswith("#/"):
                raise ValueError(f"not a local reference: {ref}")
            pointer, node = ref[1:], self.document
            for part in ref[2:].split("/"):
                node = node[part.replace("~1", "/").replace("~0", "~")]
        return pointer, node

    def name(self, pointer: str) -> str:
        return pointer.rsplit("/", 1)[-1]

    def validator(self, pointer: str) -> Draft7Validator:
        """A Draft 7 validator of the schema at ``pointer`` in the document."""
        if pointer not in self._validators:
            schema = {"$ref": f"{URI}#{pointer}"}
            self._validators[pointer] = Draft7Validator(schema, registry=self._registry)
        return self._validators[pointer]

    def problems(self, pointer: str, instance: Any) -> list[str]:
        errors = sorted(self.validator(pointer).iter_errors(instance), key=lambda e: e.path)
        return [f"{'/'.join(map(str, e.absolute_path)) or '(root)'}: {e.message}" for e in errors]

    def message(self, pointer: str, payload: Any, headers: Any = None) -> Verdict:
        """``payload`` (and ``headers``, if the message has them) against the message."""
        message = self.resolve({"$ref": "#" + pointer})[1]
        problems = self.problems(pointer + "/payload", payload)
        if "headers" in message:
            problems += [f"headers {p}" for p in self.problems(pointer + "/headers", headers)]
        return Verdict(self.name(pointer), tuple(problems))

    def ws_frame(self, frame: Any, op: str | None = None) -> Verdict:
        """A WebSocket frame the server sent; ``op``: the op of the request whose id
        it carries, if known."""
        if not isinstance(frame, dict):
            return Verdict(None, ("not a JSON object",))
        if "type" in frame:
            pointer = self.events.get(frame["type"])
            if pointer is None:
                return Verdict(None, (f"no event of type {frame['type']!r} in the document",))
            return self.message(pointer, frame)
        if "ok" not in frame:
            return Verdict(None, ("neither an event (type) nor a reply (ok)",))
        if op is not None and op not in self.replies and frame["ok"] is not False:
            return Verdict(None, (f"a reply to op {op!r}, which the document does not have",))
        # A request of an op the document does not have gets an error reply.
        candidates = self.replies.get(op or "", self.any_reply)
        # The messages whose payload's ok is this frame's ok (errorReply: false).
        claimed = [p for p in candidates if self._ok_of(p) == frame["ok"]]
        candidates = claimed or candidates
        verdicts = [self.message(p, frame) for p in candidates]
        for verdict in verdicts:
            if verdict.ok:
                return verdict
        if len(verdicts) == 1:
            return verdicts[0]
        names = ", ".join(v.message or "?" for v in verdicts)
        closest = min(verdicts, key=lambda v: len(v.problems))
        return Verdict(
            None, (f"matches none of {names}; closest {closest.message}:", *closest.problems)
        )

    def _ok_of(self, message: str) -> Any:
        payload = self.resolve({"$ref": f"#{message}/payload"})[1]
        return payload.get("properties", {}).get("ok", {}).get("const")

    def sse_event(self, event: str, id: str | None, data: Any) -> Verdict:
        """One SSE event: its ``event`` name, ``id`` (None: no id field) and parsed data."""
        pointer = self.sse.get(event)
        if pointer is None:
            return Verdict(None, (f"no SSE event {event!r} in the document",))
        headers = {"event": event} if id is None else {"event": event, "id": id}
        return self.message(pointer, data, headers)


@functools.cache
def contract() -> Contract:
    """The contract of this checkout's document (built once per process)."""
    return Contract(asyncapi_document())


# -- recording what tests receive ----------------------------------------------------------


def parse_sse(lines: list[str]) -> list[tuple[str, str | None, str]]:
    """Complete events of an event stream's lines: (event, id or None, data), as the
    HTML standard parses them (``event`` defaults to ``message``; an event with no
    ``data`` line is dispatched too, with data ``""``, so that it gets checked)."""
    events: list[tuple[str, str | None, str]] = []
    fields: dict[str, str] = {}
    data: list[str] = []
    for line in lines:
        if not line:
            if data or "event" in fields or "id" in fields:
                events.append((fields.get("event", "message"), fields.get("id"), "\n".join(data)))
            fields, data = {}, []
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "data":
            data.append(value)
        elif name in ("event", "id"):
            fields[name] = value
    return events


@dataclass
class _Socket:
    """One WebSocket's frames, in order: ("sent" | "received", text or bytes)."""

    url: str
    port: int | None
    frames: list[tuple[str, str | bytes]] = field(default_factory=list)


@dataclass
class _Stream:
    url: str
    port: int | None
    lines: list[str] = field(default_factory=list)


def _port(url: str) -> int | None:
    try:
        return urllib.parse.urlsplit(url).port
    except ValueError:
        return None


def _show(raw: Any) -> str:
    text = raw if isinstance(raw, str) else repr(raw)
    return text if len(text) <= MAX_SHOWN else text[:MAX_SHOWN] + "..."


class Tap:
    """What one test received from servers; :meth:`check` validates it."""

    def __init__(self) -> None:
        self.sockets: list[_Socket] = []
        self.streams: list[_Stream] = []
        self.foreign: set[int] = set()
        self._by_conn: dict[int, tuple[Any, _Socket]] = {}

    def not_roomcast(self, port: int) -> None:
        """Frames from ``port`` are not the server's (a stub that sends what it is told)."""
        self.foreign.add(port)

    def socket(self, conn: Any) -> _Socket:
        known = self._by_conn.get(id(conn))
        if known is None:
            try:
                host, port = conn.remote_address[:2]
            except (OSError, TypeError):  # a socket closed meanwhile (sync client)
                host, port = "?", None
            url = f"ws://{host}:{port}{conn.request.path if conn.request else ''}"
            known = self._by_conn[id(conn)] = (conn, _Socket(url, port))  # keeps conn alive
            self.sockets.append(known[1])
        return known[1]

    def stream(self, response: httpx.Response) -> _Stream:
        url = str(response.request.url)
        stream = _Stream(url, _port(url))
        self.streams.append(stream)
        return stream

    def watch_page(self, page: Any) -> None:
        """Record the WebSockets of a playwright page (frames reach Python while
        playwright is called)."""

        def on_socket(ws: Any) -> None:
            socket = _Socket(ws.url, _port(ws.url))
            self.sockets.append(socket)
            ws.on("framesent", lambda payload: socket.frames.append(("sent", payload)))
            ws.on("framereceived", lambda payload: socket.frames.append(("received", payload)))

        page.on("websocket", on_socket)

    def check(self) -> tuple[Counter[str], list[str]]:
        """(how many frames of each message were seen, a line per undescribed frame)."""
        seen: Counter[str] = Counter()
        failures: list[str] = []
        contract_ = contract()

        def judge(where: str, raw: Any, verdict: Verdict) -> None:
            if verdict.ok:
                seen[verdict.message or "?"] += 1
                return
            seen["(undescribed)"] += 1
            problems = "; ".join(verdict.problems)
            failures.append(f"{where}: {_show(raw)}\n    {verdict.message or '-'}: {problems}")

        for socket in self.sockets:
            if socket.port in self.foreign:
                continue
            pending: dict[Any, deque[str]] = {}
            for direction, raw in socket.frames:
                try:
                    frame = json.loads(raw)
                except (ValueError, UnicodeDecodeError):
                    if direction == "received":
                        judge(socket.url, raw, Verdict(None, ("not JSON",)))
                    continue
                # A request's op by its id (an unhashable id: its reply's id is null).
                rid = frame.get("id") if isinstance(frame, dict) else None
                rid = rid if isinstance(rid, Hashable) else None
                if direction == "sent":
                    if isinstance(frame, dict) and isinstance(frame.get("op"), str):
                        pending.setdefault(rid, deque()).append(frame["op"])
                    continue
                ops = pending.get(rid) if isinstance(frame, dict) and "type" not in frame else None
                judge(socket.url, raw, contract_.ws_frame(frame, ops.popleft() if ops else None))
        for stream in self.streams:
            if stream.port in self.foreign:
                continue
            for event, id_, data in parse_sse(stream.lines):
                try:
                    payload = json.loads(data)
                except ValueError:
                    judge(stream.url, data, Verdict(None, (f"event {event!r}: data not JSON",)))
                    continue
                raw = f"event: {event}" + (f" id: {id_}" if id_ is not None else "") + f" {data}"
                judge(stream.url, raw, contract_.sse_event(event, id_, payload))
        return seen, failures


_tap: Tap | None = None


def current() -> Tap | None:
    """The tap of the running test, if one is installed."""
    return _tap


def install(monkeypatch: pytest.MonkeyPatch) -> Tap:
    """Start recording into a new :class:`Tap` until ``monkeypatch`` is undone."""
    tap = Tap()
    monkeypatch.setattr(f"{__name__}._tap", tap)  # undone (back to None) with the patches
    _wrap(monkeypatch, ClientConnection, asynchronous=True)
    _wrap(monkeypatch, SyncClientConnection, asynchronous=False)
    aiter_lines: Callable[..., AsyncIterator[str]] = httpx.Response.aiter_lines

    async def tapped_lines(self: httpx.Response, *args: Any, **kwargs: Any) -> AsyncIterator[str]:
        tap_ = _tap
        stream = None
        if tap_ is not None and self.headers.get("content-type", "").startswith(
            "text/event-stream"
        ):
            stream = tap_.stream(self)
        async for line in aiter_lines(self, *args, **kwargs):
            if stream is not None:
                stream.lines.append(line)
            yield line

    monkeypatch.setattr(httpx.Response, "aiter_lines", tapped_lines)
    return tap


def _wrap(monkeypatch: pytest.MonkeyPatch, cls: type[Any], *, asynchronous: bool) -> None:
    recv, send = cls.recv, cls.send

    def sent(conn: Any, message: Any) -> None:
        if _tap is not None and isinstance(message, str | bytes):
            _tap.socket(conn).frames.append(("sent", message))

    def received(conn: Any, data: Any) -> None:
        if _tap is not None:
            _tap.socket(conn).frames.append(("received", data))

    if asynchronous:

        async def arecv(self: Any, *args: Any, **kwargs: Any) -> Any:
            data = await recv(self, *args, **kwargs)
            received(self, data)
            return data

        async def asend(self: Any, message: Any, *args: Any, **kwargs: Any) -> Any:
            sent(self, message)
            return await send(self, message, *args, **kwargs)

        monkeypatch.setattr(cls, "recv", arecv)
        monkeypatch.setattr(cls, "send", asend)
    else:

        def srecv(self: Any, *args: Any, **kwargs: Any) -> Any:
            data = recv(self, *args, **kwargs)
            received(self, data)
            return data

        def ssend(self: Any, message: Any, *args: Any, **kwargs: Any) -> Any:
            sent(self, message)
            return send(self, message, *args, **kwargs)

        monkeypatch.setattr(cls, "recv", srecv)
        monkeypatch.setattr(cls, "send", ssend)
