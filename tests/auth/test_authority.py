"""The Authority's rules, origins, namespaces and connection limits."""

from __future__ import annotations

import fnmatch
import re
from pathlib import Path
from typing import Any

import pytest

import roomcast.auth.principal as principal_module
from roomcast.auth import Authority, InvalidCredentials, Patterns, TooManyConnections
from roomcast.auth.limits import ConnectionLimiter
from roomcast.auth.origins import OriginPolicy
from roomcast.hub.archive import RoomOptions
from roomcast.settings import Settings

from .keys import SECRET, hs256

NAMESPACES = {
    "feed": {"public": True, "client_publish": False, "presence": False},
    "chat": {"history_size": 50},
    "audit": {"persist": True},
}


def authority(**settings: Any) -> Authority:
    return Authority(Settings(**settings))


def jwt_authority(**settings: Any) -> Authority:
    return authority(auth="jwt", jwt_secret=SECRET, namespaces=NAMESPACES, **settings)


def test_patterns_match_whole_room_names_shell_style() -> None:
    patterns = Patterns(["chat:*", "dm:alice"])
    assert patterns.matches("chat:lobby")
    assert patterns.matches("dm:alice")
    assert not patterns.matches("dm:alice2")
    assert not patterns.matches("xchat:lobby")
    assert not Patterns([]).matches("anything")
    assert Patterns(["*"]).matches("a:b:c")


ROOMS = ["", "a", "ab", "abc", "acb", "a.b", "a.bc", "axb", "ax", "bx", "chat:", "chat:x"]
ROOMS += ["dm:alice", "dm:alice2", "x", "xa", "xb1", "q", "qr", "z:end", "a\nb", "*"]


@pytest.mark.parametrize(
    "pattern",
    ["*", "chat:*", "dm:alice", "a*b", "a?c", "[ab]x", "x[!a]*", "**", "*:end", "a.b*", "q?*"],
)
def test_patterns_match_as_fnmatch_translates_them(pattern: str) -> None:
    regex = re.compile(fnmatch.translate(pattern))
    patterns = Patterns([pattern])
    for room in ROOMS:
        assert patterns.matches(room) == (regex.fullmatch(room) is not None), room


def test_patterns_of_new_users_keep_no_compiled_expression() -> None:
    """Tokens carry patterns of their own user (``dm:u42:*``): names and ``prefix*``
    patterns compile nothing, so a process that sees new users all day keeps nothing
    per user once their connections are gone (no cache that grows with each user)."""
    before = principal_module._compile.cache_info().currsize
    for n in range(1000):
        patterns = Patterns(["soak:*", f"dm:u{n}:*", f"inbox:u{n}"])
        assert patterns.matches(f"dm:u{n}:x")
        assert patterns.matches(f"inbox:u{n}")
        assert not patterns.matches(f"dm:u{n + 1}:x")
    assert principal_module._compile.cache_info().currsize == before


async def test_auth_off_lets_anyone_read_and_publish_everywhere() -> None:
    rules = authority()
    principal = await rules.authenticate(None, "ann")
    assert principal.anonymous
    assert principal.name == "ann"
    assert rules.may_subscribe(principal, "any:room")
    assert rules.may_publish(principal, "x")
    assert (await rules.authenticate(hs256())).anonymous  # tokens are not looked at


async def test_auth_jwt_refuses_anonymous_clients_without_public_namespaces() -> None:
    rules = authority(auth="jwt", jwt_secret=SECRET)
    assert not rules.anonymous_allowed
    with pytest.raises(InvalidCredentials, match="token is required"):
        await rules.authenticate(None)


async def test_anonymous_clients_may_only_read_public_namespaces() -> None:
    rules = jwt_authority()
    anon = await rules.authenticate(None, "viewer")
    assert rules.may_subscribe(anon, "feed:prices")
    assert not rules.may_subscribe(anon, "chat:lobby")
    assert not rules.may_publish(anon, "feed:prices")


async def test_a_token_reads_its_rooms_plus_public_ones_and_publishes_only_its_publish() -> None:
    rules = jwt_authority()
    alice = await rules.authenticate(hs256(rooms=["chat:*"], publish=["chat:lobby"]))
    assert rules.may_subscribe(alice, "chat:other")
    assert rules.may_subscribe(alice, "feed:x")
    assert not rules.may_subscribe(alice, "dm:bob")
    assert rules.may_publish(alice, "chat:lobby")
    assert not rules.may_publish(alice, "chat:other")


async def test_client_publish_false_refuses_even_a_token_that_allows_it() -> None:
    rules = jwt_authority()
    alice = await rules.authenticate(hs256(rooms=["*"], publish=["*"]))
    assert rules.may_publish(alice, "chat:x")
    assert not rules.may_publish(alice, "feed:x")


async def test_rest_with_an_api_key_is_admin_anywhere() -> None:
    rules = jwt_authority(api_keys="k1,k2")
    for bearer, header in (("k2", None), (None, "k1")):
        principal = await rules.rest_principal(bearer, header)
        assert principal.admin
        assert rules.may_publish(principal, "feed:x")
        assert rules.may_administer(principal)


async def test_rest_refuses_every_credential_that_does_not_hold() -> None:
    rules = jwt_authority(api_keys="k1")
    for bearer, header in (("wrong", None), (None, "wrong"), ("k1", "wrong"), ("wrong", "k1")):
        with pytest.raises(InvalidCredentials):
            await rules.rest_principal(bearer, header)


async def test_rest_without_credentials() -> None:
    open_rules = authority()
    principal = await open_rules.rest_principal(None, None)
    assert open_rules.may_administer(principal)  # zero-setup: REST is open
    keyed = authority(api_keys="k1")
    reader = await keyed.rest_principal(None, None)
    assert keyed.may_subscribe(reader, "x")
    assert not keyed.may_publish(reader, "x")
    assert not keyed.may_administer(reader)
    strict = jwt_authority()
    nobody = await strict.rest_principal(None, None)
    assert strict.may_subscribe(nobody, "feed:x")
    assert not strict.may_subscribe(nobody, "chat:x")
    with pytest.raises(InvalidCredentials):  # auth=off: a bearer must be an API key
        await keyed.rest_principal("some-token", None)


async def test_rest_with_a_token_acts_as_its_user() -> None:
    rules = jwt_authority()
    alice = await rules.rest_principal(hs256(publish=["chat:*"]), None)
    assert rules.may_publish(alice, "chat:x")
    assert not rules.may_administer(alice)


def test_namespaces_give_rooms_nobody_created_their_options() -> None:
    rules = jwt_authority()
    ns = rules.namespaces
    assert ns.room_options("feed:x") == RoomOptions(persist=False, presence=False)
    assert ns.room_options("chat:x") == RoomOptions(history_size=50)
    assert ns.room_options("audit:x").persist
    assert ns.room_options("lobby") == RoomOptions()
    assert ns.any_persisted
    assert not authority().namespaces.any_persisted


def test_the_star_namespace_is_the_default_and_a_file_is_merged(tmp_path: Path) -> None:
    path = tmp_path / "namespaces.toml"
    path.write_text('["*"]\npublic = true\n\n[chat]\npresence = false\n[feed]\npublic = false\n')
    rules = authority(namespaces_file=str(path), namespaces={"feed": {"public": True}})
    ns = rules.namespaces
    assert ns.of("other:x").public
    assert ns.of("nothing").public
    assert not ns.room_options("chat:x").presence
    assert ns.of("feed:x").public  # the setting wins over the file


def test_a_namespace_file_with_an_unknown_option_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "namespaces.json"
    path.write_text('{"chat": {"pubic": true}}')
    with pytest.raises(ValueError, match="pubic"):
        authority(namespaces_file=str(path))


@pytest.mark.parametrize(
    ("origin", "host", "allowed"),
    [
        (None, "chat.example", True),  # not a browser
        ("https://chat.example", "chat.example", True),  # same origin
        ("https://127.0.0.1:8000", "127.0.0.1:8000", True),
        ("https://127.0.0.1:8001", "127.0.0.1:8000", False),  # another port
        ("https://chat.example", "chat.example:443", True),
        ("https://evil.example", "chat.example", False),
        ("https://chat.example.evil.example", "chat.example", False),
        ("null", "chat.example", False),
        ("https://app.example", "chat.example", True),  # configured
        ("HTTPS://APP.EXAMPLE", "chat.example", True),
        ("https://app.example:443", "chat.example", True),  # the default port, written
        ("https://app.example:8443", "chat.example", False),
        ("not a url", "chat.example", False),
    ],
)
def test_origins(origin: str | None, host: str, allowed: bool) -> None:
    assert OriginPolicy(["https://app.example/"]).allows(origin, host, scheme="https") is allowed


@pytest.mark.parametrize(
    ("origin", "host", "scheme", "allowed"),
    [
        # An Origin without a port has its scheme's default port, never "any port".
        ("http://127.0.0.1", "127.0.0.1:47829", "http", False),
        ("http://127.0.0.1", "127.0.0.1:47829", "ws", False),
        ("http://127.0.0.1:47829", "127.0.0.1:47829", "ws", True),
        ("http://127.0.0.1", "127.0.0.1", "ws", True),
        ("http://127.0.0.1:80", "127.0.0.1", "http", True),
        ("https://chat.example", "chat.example:443", "wss", True),
        # A Host without a port has the default port of the server's scheme: a proxy
        # that drops the port (nginx's $host) no longer makes every port the same.
        ("http://chat.example:8080", "chat.example", "http", False),
        ("https://chat.example:8443", "chat.example", "https", False),
        ("https://chat.example", "chat.example", "https", True),
        # The scheme is part of the origin.
        ("http://chat.example", "chat.example", "https", False),
        ("http://chat.example", "chat.example", "wss", False),
        ("https://chat.example", "chat.example", "http", False),
        ("http://chat.example:443", "chat.example", "https", False),
        # IPv6, userinfo, junk.
        ("http://[::1]:8000", "[::1]:8000", "http", True),
        ("http://[::1]", "[::1]:8000", "http", False),
        ("http://user@chat.example", "chat.example", "http", False),
        ("ftp://chat.example", "chat.example", "http", False),
        ("http://chat.example", "chat.example:99999", "http", False),
        ("http://chat.example", "", "http", False),
    ],
)
def test_same_origin_compares_scheme_host_and_effective_port(
    origin: str, host: str, scheme: str, allowed: bool
) -> None:
    assert OriginPolicy([]).allows(origin, host, scheme=scheme) is allowed


def test_a_star_allows_every_origin() -> None:
    assert OriginPolicy(["*"]).allows("https://evil.example", "chat.example", scheme="https")


def test_connection_limits_per_ip_and_per_user_and_release() -> None:
    limiter = ConnectionLimiter(per_user=2, per_ip=3)
    leases = [limiter.lease("10.0.0.1") for _ in range(3)]
    with pytest.raises(TooManyConnections):
        limiter.lease("10.0.0.1")
    other = limiter.lease("10.0.0.2")  # another address is not affected
    leases[0].claim_user("alice")
    leases[1].claim_user("alice")
    with pytest.raises(TooManyConnections):
        leases[2].claim_user("alice")
    leases[2].claim_user("bob")
    leases[0].release()
    leases[0].release()  # idempotent
    leases[2].claim_user("alice")  # bob's place moves to alice
    assert limiter.users == {"alice": 2}
    limiter.lease("10.0.0.1")
    for lease in (*leases, other):
        lease.release()
    assert limiter.users == {}
    assert limiter.ips == {"10.0.0.1": 1}


def test_zero_means_no_connection_limit() -> None:
    limiter = ConnectionLimiter(per_user=0, per_ip=0)
    for _ in range(1000):
        limiter.lease("10.0.0.1").claim_user("alice")
