"""The scenarios both clients must pass, in one list: ``SCENARIOS``.

Each :class:`Scenario` names its servers (``setup``), plays its steps through a
:class:`Driver` (roomcast.client in-process, or roomcast.js in Chromium: the steps do
not know which) and a :class:`Stage` (the servers: start, SIGKILL, restart, REST, Redis),
and returns :class:`Facts`: what each client observed, and what the servers say. Its
``expect`` then holds for either client.

What a client observes (:class:`Observed`), as plain JSON in both drivers:

* ``events``: per room, in arrival order, ``["message", room, epoch, offset, data]``,
  ``["gap", room, epoch, offset, cause]`` (the server's ``reset``: cause ``server``; a
  resume answered ``recovered: false``: ``not_recovered``), ``["recovered", room]`` (a
  resume that got everything it missed);
* ``states``: every ``[state, close code]`` the client reported;
* ``errors``: ``[what, code]`` for each failed call (``subscribe``, ``publish``) or
  refused resubscribe, with roomcast.js's error codes (``timeout``, ``disconnected``,
  ``closed``, ``queue_full``, or the server's);
* ``acks``: ``[room, epoch, offset, duplicate, data]`` of each publish answered;
* ``tokens``: how often the token callback was asked; ``busy``: pumps still running.
"""

from __future__ import annotations

import itertools
import signal
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

import httpx
import pytest

from ..python_client_kit import API_KEY, JWT, token

if TYPE_CHECKING:
    from ...conftest import ServerProcess
    from ...redis_server import RedisServer
    from ..apps import AppFactory

ServerFactory = Callable[..., "ServerProcess"]
ADMIN = {"X-API-Key": API_KEY}


class Ack(NamedTuple):
    room: str
    epoch: str
    offset: int
    duplicate: bool
    data: Any


class Gap(NamedTuple):
    room: str
    epoch: str
    offset: int
    cause: str


@dataclass
class Observed:
    """What one client reported (see the module's docstring)."""

    events: list[list[Any]] = field(default_factory=list)
    states: list[tuple[str, int | None]] = field(default_factory=list)
    errors: list[tuple[str, str]] = field(default_factory=list)
    acks: list[Ack] = field(default_factory=list)
    tokens: int = 0
    busy: int = 0

    @classmethod
    def of(cls, raw: dict[str, Any]) -> Observed:
        """From the drivers' JSON record."""
        return cls(
            events=[list(e) for e in raw["events"]],
            states=[(s, c) for s, c in raw["states"]],
            errors=[(w, c) for w, c in raw["errors"]],
            acks=[Ack(*a) for a in raw["acks"]],
            tokens=int(raw["tokens"]),
            busy=int(raw["busy"]),
        )

    def messages(self, room: str) -> list[tuple[str, int, Any]]:
        return [(e[2], e[3], e[4]) for e in self.events if e[0] == "message" and e[1] == room]

    def gaps(self, room: str) -> list[Gap]:
        return [Gap(*e[1:]) for e in self.events if e[0] == "gap" and e[1] == room]

    def recovered(self, room: str) -> int:
        return sum(1 for e in self.events if e == ["recovered", room])

    @property
    def state(self) -> str:
        return self.states[-1][0] if self.states else "idle"

    def reached(self, offset: int, room: str, epoch: str) -> bool:
        """Whether the room's stream got to ``offset`` of ``epoch`` (a message at or
        past it, or a gap that covers it)."""
        return any(e == epoch and o >= offset for e, o, _ in self.messages(room)) or any(
            g.epoch != epoch or g.offset >= offset for g in self.gaps(room)
        )


class Driver(Protocol):
    """One client library, driven by a scenario. Clients are named by ``label``."""

    kind: str

    def open(
        self,
        label: str,
        server: ServerProcess,
        *,
        name: str | None = None,
        tokens: Sequence[str] = (),
        request_timeout: float = 10.0,
    ) -> None:
        """A client of ``server``'s ``/ws``, connected when this returns. ``tokens``: the
        token callback's answers, in turn (the last one again and again); the client
        reconnects with 50-300 ms backoff and never refreshes a token in place."""

    def subscribe(self, label: str, room: str) -> str | None:
        """Subscribe and record the room's events; the error code if it failed."""

    def publish(self, label: str, room: str, data: Any) -> Ack | str:
        """Publish with the client's defaults (an idempotency key); the ack or error code."""

    def pump(self, label: str, room: str, count: int, pause: float = 0.02) -> None:
        """Publish ``[label, n]`` for n in range(count), one after another with
        ``pause`` seconds between them, in the background (each error recorded, then
        on to the next)."""

    def in_flight(self, label: str) -> int:
        """Requests written to the connection and not answered yet."""

    def observed(self, label: str) -> Observed: ...

    def close(self) -> None: ...


def wait(
    driver: Driver,
    label: str,
    condition: Callable[[Observed], bool],
    what: str,
    timeout: float = 20,
) -> Observed:
    """Until ``label``'s observations satisfy ``condition``; those observations."""
    deadline = time.monotonic() + timeout
    while True:
        seen = driver.observed(label)
        if condition(seen):
            return seen
        if time.monotonic() > deadline:
            raise AssertionError(f"{driver.kind}/{label}: not within {timeout} s: {what}\n{seen}")
        time.sleep(0.05)


class Stage:
    """The servers of one scenario: real ``roomcast serve`` processes, Redis, the stub."""

    def __init__(
        self,
        request: pytest.FixtureRequest,
        server_factory: ServerFactory,
        app_factory: AppFactory,
    ) -> None:
        self._request = request
        self._server_factory = server_factory
        self._app_factory = app_factory
        self.http = httpx.Client(timeout=10)

    def server(self, **settings: object) -> ServerProcess:
        return self._server_factory(**settings)

    def restart(self, server: ServerProcess, **settings: object) -> ServerProcess:
        """A new server on ``server``'s port (its clients reconnect to it)."""
        return self._server_factory(listen_port=server.port, **settings)

    def kill(self, server: ServerProcess) -> None:
        server.stop(signal.SIGKILL)

    def freeze(self, server: ServerProcess) -> None:
        """SIGSTOP: the server's sockets stay open, and nothing it gets is read."""
        server.process.send_signal(signal.SIGSTOP)

    def shared_redis(self) -> dict[str, str]:
        """Settings for the session's redis-server, with a prefix of this scenario's own."""
        redis: RedisServer = self._request.getfixturevalue("redis_server")
        return {"redis_url": redis.url, "redis_prefix": f"conf{uuid.uuid4().hex[:8]}"}

    def own_redis(self) -> RedisServer:
        """A redis-server of this scenario alone (it may be flushed)."""
        redis: RedisServer = self._request.getfixturevalue("own_redis")
        return redis

    def stub(self) -> ServerProcess:
        """The protocol stub (tests/e2e/stub_server.py)."""
        return self._app_factory("tests.e2e.stub_server:app", "/stub/log")

    def control(self, stub: ServerProcess, action: str, **params: str) -> None:
        self.http.post(f"{stub.http}/stub/{action}", params=params).raise_for_status()

    def rest_publish(self, server: ServerProcess, room: str, data: Any) -> Ack:
        reply = self.http.post(f"{server.http}/rooms/{room}/messages", json={"data": data})
        reply.raise_for_status()
        body = reply.json()
        return Ack(room, body["epoch"], body["offset"], False, data)

    def history(
        self, server: ServerProcess, room: str, *, admin: bool = False
    ) -> list[dict[str, Any]]:
        """The room's retained events; ``admin``: with the API key (auth=jwt servers)."""
        reply = self.http.get(
            f"{server.http}/rooms/{room}/messages",
            params={"limit": 1000},
            headers=ADMIN if admin else None,
        )
        reply.raise_for_status()
        events: list[dict[str, Any]] = reply.json()["events"]
        return events

    def presence(self, server: ServerProcess, room: str) -> list[str]:
        reply = self.http.get(f"{server.http}/rooms/{room}/presence", headers=ADMIN)
        reply.raise_for_status()
        return [m["user"] for m in reply.json()["members"]]

    def admin(self, server: ServerProcess, path: str, body: dict[str, Any]) -> None:
        self.http.post(f"{server.http}{path}", json=body, headers=ADMIN).raise_for_status()

    def until(self, condition: Callable[[], bool], what: str, timeout: float = 10) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            if time.monotonic() > deadline:
                raise AssertionError(f"not within {timeout} s: {what}")
            time.sleep(0.05)

    def settle(self, seconds: float) -> None:
        """Give something that must not happen (a reconnect) the time to happen."""
        time.sleep(seconds)

    def close(self) -> None:
        self.http.close()


@dataclass
class Facts:
    """What a scenario found: each client's observations, and the servers' side."""

    observed: dict[str, Observed]
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Scenario:
    name: str
    setup: str
    """The servers, in words."""
    play: Callable[[Stage, Driver], Facts]
    expect: Callable[[Facts], None]

    def __str__(self) -> str:
        return self.name


# -- checks -------------------------------------------------------------------------------


def exactly_once_or_signalled(seen: Observed, room: str, acks: Sequence[Ack]) -> None:
    """Every acknowledged publish was received exactly once, or a gap the client
    signalled (a ``reset``, a resume ``recovered: false``) covers it; nothing twice."""
    messages = seen.messages(room)
    positions = [(epoch, offset) for epoch, offset, _ in messages]
    assert len(positions) == len(set(positions)), "a message delivered twice"
    gaps = seen.gaps(room)
    missing = [
        ack
        for ack in acks
        if (ack.epoch, ack.offset) not in positions
        and not any(g.epoch != ack.epoch or g.offset >= ack.offset for g in gaps)
    ]
    assert missing == [], f"acknowledged, never received, no gap signalled: {missing[:5]}"
    got = {(epoch, offset): data for epoch, offset, data in messages}
    wrong = [a for a in acks if (a.epoch, a.offset) in got and got[a.epoch, a.offset] != a.data]
    assert wrong == [], f"another message at an acknowledged position: {wrong[:5]}"


def in_order(seen: Observed, room: str) -> None:
    """A room's messages come in stream order (offsets rise within an epoch)."""
    messages = seen.messages(room)
    for (e1, o1, _), (e2, o2, _) in itertools.pairwise(messages):
        assert e1 != e2 or o2 > o1, f"out of order: {(e1, o1)} then {(e2, o2)}"


def states(seen: Observed) -> list[str]:
    return [state for state, _ in seen.states]


# -- the scenarios --------------------------------------------------------------------------

ROOM = "chat:conformance"


def play_subscribe(stage: Stage, driver: Driver) -> Facts:
    server = stage.server()
    driver.open("ann", server, name="ann")
    assert driver.subscribe("ann", ROOM) is None
    for n in range(3):
        driver.publish("ann", ROOM, n)
    rest = [stage.rest_publish(server, ROOM, f"rest {n}") for n in range(3)]
    seen = wait(driver, "ann", lambda o: len(o.messages(ROOM)) >= 6, "six messages")
    return Facts({"ann": seen}, {"rest": rest})


def expect_subscribe(facts: Facts) -> None:
    ann = facts.observed["ann"]
    epoch = facts.extra["rest"][0].epoch
    assert ann.messages(ROOM) == [
        (epoch, 1, 0), (epoch, 2, 1), (epoch, 3, 2),
        (epoch, 4, "rest 0"), (epoch, 5, "rest 1"), (epoch, 6, "rest 2"),
    ]  # fmt: skip
    assert ann.acks == [Ack(ROOM, epoch, n + 1, False, n) for n in range(3)]
    assert (ann.errors, ann.gaps(ROOM), ann.recovered(ROOM)) == ([], [], 0)
    assert ann.states == [("connecting", None), ("connected", None)]


def play_resume_after_kill(stage: Stage, driver: Driver) -> Facts:
    """Anonymous; the server is stopped, then killed, with the client's own publish
    written to it and unanswered, so that publish is sent again after the reconnect."""
    shared = stage.shared_redis()
    a, b = stage.server(**shared), stage.server(**shared)
    driver.open("ann", a, name="ann")
    assert driver.subscribe("ann", ROOM) is None
    acks = [stage.rest_publish(b, ROOM, f"before {n}") for n in range(3)]
    wait(driver, "ann", lambda o: len(o.messages(ROOM)) == 3, "three messages")
    stage.freeze(a)
    driver.pump("ann", ROOM, 1)  # ["ann", 0], in the background
    stage.until(lambda: driver.in_flight("ann") == 1, "the publish written, unanswered")
    stage.kill(a)
    wait(driver, "ann", lambda o: o.state == "reconnecting", "reconnecting")
    acks += [stage.rest_publish(b, ROOM, f"away {n}") for n in range(3)]
    stage.restart(a, **shared)
    wait(driver, "ann", lambda o: o.state == "resumed", "resumed")
    own = wait(driver, "ann", lambda o: o.busy == 0, "the publish answered").acks
    acks.append(stage.rest_publish(b, ROOM, "after"))
    seen = wait(driver, "ann", lambda o: len(o.messages(ROOM)) >= 8, "eight messages")
    return Facts({"ann": seen}, {"acks": acks, "own": own, "history": stage.history(b, ROOM)})


def expect_resume_after_kill(facts: Facts) -> None:
    ann, own = facts.observed["ann"], facts.extra["own"]
    # Resent on the new connection (the killed server never read the first copy).
    assert [(a.data, a.duplicate) for a in own] == [(["ann", 0], False)]
    acks = sorted([*facts.extra["acks"], *own], key=lambda a: a.offset)
    exactly_once_or_signalled(ann, ROOM, acks)
    # Redis kept the history: a full recovery, in order, with no gap.
    assert ann.messages(ROOM) == [(a.epoch, a.offset, a.data) for a in acks]
    assert [e["data"] for e in facts.extra["history"]] == [a.data for a in acks]  # once
    assert (ann.recovered(ROOM), ann.gaps(ROOM), ann.errors) == (1, [], [])
    assert ("reconnecting", 1006) in ann.states
    assert states(ann)[-1] == "resumed"


LOAD_EACH = 50


def play_kill_under_load(stage: Stage, driver: Driver) -> Facts:
    """The subscriber and two publishers are on server A, a third publisher on B (same
    Redis); A is SIGKILLed while all three publish, and restarted."""
    shared = {**stage.shared_redis(), **JWT, "api_keys": API_KEY}
    a, b = stage.server(**shared), stage.server(**shared)
    driver.open("reader", a, tokens=[token("reader")])
    assert driver.subscribe("reader", ROOM) is None
    publishers = {"p1": a, "p2": a, "p3": b}
    for label, server in publishers.items():
        driver.open(label, server, tokens=[token(label)])
    for label in publishers:
        driver.pump(label, ROOM, LOAD_EACH)
    wait(driver, "reader", lambda o: len(o.messages(ROOM)) >= 30, "30 messages")
    stage.kill(a)
    assert driver.observed("p1").busy == 1, "p1 had published everything before the kill"
    away = min(LOAD_EACH, len(driver.observed("p3").acks) + 10)
    wait(driver, "p3", lambda o: len(o.acks) >= away, "publishes while A is down")
    stage.restart(a, **shared)
    done = {label: wait(driver, label, lambda o: o.busy == 0, "done", 40) for label in publishers}
    acks = [ack for seen in done.values() for ack in seen.acks]
    last = max(acks, key=lambda ack: ack.offset)
    seen = wait(
        driver, "reader", lambda o: o.reached(last.offset, ROOM, last.epoch), "the last publish"
    )
    return Facts(
        {"reader": seen, **done}, {"acks": acks, "history": stage.history(b, ROOM, admin=True)}
    )


def expect_kill_under_load(facts: Facts) -> None:
    reader, acks, history = facts.observed["reader"], facts.extra["acks"], facts.extra["history"]
    exactly_once_or_signalled(reader, ROOM, acks)
    in_order(reader, ROOM)
    data = [tuple(d) for _, _, d in reader.messages(ROOM)]
    assert len(data) == len(set(data)), "one publish received as two events"
    assert reader.recovered(ROOM) >= 1
    for label in ("p1", "p2", "p3"):
        assert facts.observed[label].errors == [], label  # each publish was acknowledged
        assert len(facts.observed[label].acks) == LOAD_EACH
    # The room holds exactly one event per publish (resends included).
    stored = [tuple(e["data"]) for e in history]
    assert len(stored) == len(set(stored)) == 3 * LOAD_EACH
    at = {tuple(e["data"]): (e["epoch"], e["offset"]) for e in history}
    assert all(at[tuple(a.data)] == (a.epoch, a.offset) for a in acks)


def play_refresh_on_3003(stage: Stage, driver: Driver) -> Facts:
    server = stage.server(**JWT)
    # expires in 4.5-5.5 s (whole seconds): opening a page, connecting, subscribing and
    # publishing took over 1.5 s on a loaded CI machine
    tokens = [token("tia", ttl=5.5), token("tia", ttl=600)]
    driver.open("tia", server, tokens=tokens)
    assert driver.subscribe("tia", ROOM) is None
    driver.publish("tia", ROOM, "before")
    early = driver.observed("tia").states
    assert ("reconnecting", 3003) not in early, f"the token expired before the subscribe: {early}"
    wait(driver, "tia", lambda o: ("reconnecting", 3003) in o.states, "closed 3003", 15)
    wait(driver, "tia", lambda o: o.state == "resumed", "resumed")
    driver.publish("tia", ROOM, "after")
    seen = wait(driver, "tia", lambda o: len(o.messages(ROOM)) >= 2, "two messages")
    return Facts({"tia": seen})


def expect_refresh_on_3003(facts: Facts) -> None:
    tia = facts.observed["tia"]
    assert tia.tokens == 2  # the first connection's, and a fresh one after the 3003
    assert [d for _, _, d in tia.messages(ROOM)] == ["before", "after"]
    assert [a.offset for a in tia.acks] == [1, 2]
    expired = tia.states.index(("reconnecting", 3003))
    assert states(tia)[expired:][-1] == "resumed"
    assert "failed" not in states(tia)
    assert (tia.recovered(ROOM), tia.errors) == (1, [])


def play_stop_on_3500(stage: Stage, driver: Driver) -> Facts:
    server = stage.server(**JWT, api_keys=API_KEY)
    driver.open("sam", server, tokens=[token("sam")])
    assert driver.subscribe("sam", ROOM) is None
    stage.until(lambda: stage.presence(server, ROOM) == ["sam"], "sam present")
    stage.admin(server, "/users/sam/disconnect", {"code": 3500})
    wait(driver, "sam", lambda o: o.state == "failed", "failed")
    driver.publish("sam", ROOM, "after")
    stage.settle(0.5)  # many times the backoff: a reconnect would be in by now
    return Facts({"sam": driver.observed("sam")}, {"presence": stage.presence(server, ROOM)})


def expect_stop_on_3500(facts: Facts) -> None:
    sam = facts.observed["sam"]
    assert sam.states[-1] == ("failed", 3500)  # reported to the application
    assert "reconnecting" not in states(sam)
    assert sam.errors == [("publish", "closed")]
    assert sam.tokens == 1
    assert facts.extra["presence"] == []  # it did not come back


def play_slow_server(stage: Stage, driver: Driver) -> Facts:
    """The stub never answers a subscribe to ``chat:late``."""
    stub = stage.stub()
    stage.control(stub, "hold", room="chat:late")
    driver.open("ann", stub, name="ann", request_timeout=1.0)
    late = driver.subscribe("ann", "chat:late")
    ok = driver.subscribe("ann", "chat:ok")
    ack = driver.publish("ann", "chat:ok", "on time")
    return Facts({"ann": driver.observed("ann")}, {"late": late, "ok": ok, "ack": ack})


def expect_slow_server(facts: Facts) -> None:
    ann = facts.observed["ann"]
    assert facts.extra["late"] == "timeout"  # the request timeout fired and was reported
    assert ann.errors == [("subscribe", "timeout")]
    assert facts.extra["ok"] is None  # and the client goes on
    ack = facts.extra["ack"]
    assert isinstance(ack, Ack)
    assert (ack.room, ack.offset) == ("chat:ok", 1)
    assert ann.messages("chat:late") == []


def play_reset(stage: Stage, driver: Driver) -> Facts:
    """The room's history is lost under the subscriber (FLUSHALL): the next publish
    starts a new epoch, which the server announces with a ``reset``."""
    redis = stage.own_redis()
    server = stage.server(redis_url=redis.url, redis_prefix="reset")
    driver.open("ann", server, name="ann")
    assert driver.subscribe("ann", ROOM) is None
    for n in range(3):
        driver.publish("ann", ROOM, n)
    wait(driver, "ann", lambda o: len(o.messages(ROOM)) == 3, "three messages")
    assert redis.cli("FLUSHALL") == "OK"
    after = [stage.rest_publish(server, ROOM, f"after {n}") for n in range(2)]
    seen = wait(driver, "ann", lambda o: len(o.messages(ROOM)) >= 5, "five messages")
    return Facts({"ann": seen}, {"after": after})


def expect_reset(facts: Facts) -> None:
    ann, after = facts.observed["ann"], facts.extra["after"]
    old = ann.acks[0].epoch
    new = after[0].epoch
    assert new != old
    assert ann.events == [
        ["message", ROOM, old, 1, 0],
        ["message", ROOM, old, 2, 1],
        ["message", ROOM, old, 3, 2],
        ["gap", ROOM, new, 0, "server"],
        ["message", ROOM, new, 1, "after 0"],
        ["message", ROOM, new, 2, "after 1"],
    ]
    assert ann.errors == []


SCENARIOS = [
    Scenario("subscribe", "one server (memory broker)", play_subscribe, expect_subscribe),
    Scenario(
        "resume after SIGKILL",
        "two servers on one Redis; the client's is stopped with a publish in flight, killed"
        " and restarted",
        play_resume_after_kill,
        expect_resume_after_kill,
    ),
    Scenario(
        "SIGKILLed server under load",
        "two servers on one Redis, auth=jwt; three publishers and the subscriber",
        play_kill_under_load,
        expect_kill_under_load,
    ),
    Scenario(
        "token refresh on 3003",
        "one server, auth=jwt; a 5 s token, then a fresh one from the callback",
        play_refresh_on_3003,
        expect_refresh_on_3003,
    ),
    Scenario(
        "3500 stops",
        "one server, auth=jwt, an API key to disconnect the user with 3500",
        play_stop_on_3500,
        expect_stop_on_3500,
    ),
    Scenario(
        "slow server",
        "the protocol stub, holding one room's subscribes",
        play_slow_server,
        expect_slow_server,
    ),
    Scenario(
        "reset",
        "one server on a Redis of its own, flushed under the subscriber",
        play_reset,
        expect_reset,
    ),
]
