"""Token verification: what is accepted, and every way a token is refused."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar

import jwt
import pytest

from roomcast.auth import AuthUnavailable, InvalidCredentials, TokenExpiredError
from roomcast.auth.tokens import TokenVerifier, issue_token
from roomcast.settings import Settings

from .keys import SECRET, ec_key, hs256, jwks, public_pem, rsa_key, signed, unsigned


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def verifier(**settings: Any) -> TokenVerifier:
    settings.setdefault("auth", "jwt")
    return TokenVerifier(Settings(**settings))


def hs() -> TokenVerifier:
    return verifier(jwt_secret=SECRET)


async def test_a_valid_hs256_token_names_its_user_and_room_patterns() -> None:
    token = hs256(name="Alice", rooms=["chat:*"], publish=["chat:lobby"])
    principal = await hs().principal(token)
    assert (principal.user, principal.name) == ("alice", "Alice")
    assert principal.subscribe.matches("chat:x")
    assert not principal.subscribe.matches("feed:x")
    assert principal.publish.matches("chat:lobby")
    assert not principal.publish.matches("chat:x")
    assert principal.expires is not None
    assert principal.expires > time.time()
    assert not principal.anonymous
    assert not principal.admin


async def test_a_token_without_publish_claims_is_read_only() -> None:
    principal = await hs().principal(hs256(rooms=["chat:*"]))
    assert not principal.publish.matches("chat:x")


async def test_a_wrong_signature_is_invalid() -> None:
    with pytest.raises(InvalidCredentials):
        await hs().principal(hs256(secret="another-secret-of-at-least-32-bytes!!"))


async def test_a_tampered_payload_is_invalid() -> None:
    head, body, sig = hs256(rooms=["chat:*"]).split(".")
    payload = json.loads(base64.urlsafe_b64decode(body + "=="))
    payload["rooms"] = ["*"]
    forged = base64.urlsafe_b64encode(json.dumps(payload).encode()).rstrip(b"=").decode()
    with pytest.raises(InvalidCredentials):
        await hs().principal(f"{head}.{forged}.{sig}")


async def test_alg_none_is_refused() -> None:
    with pytest.raises(InvalidCredentials, match="algorithm 'none'"):
        await hs().principal(unsigned())


async def test_an_algorithm_not_in_the_settings_is_refused() -> None:
    v = verifier(jwt_secret=SECRET, jwt_algorithms="HS512")
    with pytest.raises(InvalidCredentials, match="algorithm 'HS256'"):
        await v.principal(hs256())


async def test_hs_rs_confusion_the_public_key_is_never_an_hmac_secret() -> None:
    # The classic attack: sign HS256 with the server's RSA *public* key as the secret.
    pem = public_pem(rsa_key())
    v = verifier(jwt_secret=SECRET, jwt_public_key=pem, jwt_algorithms="HS256,RS256")
    header = _b64(b'{"alg":"HS256","typ":"JWT"}')
    body = _b64(json.dumps({"sub": "mallory", "exp": int(time.time()) + 60}).encode())
    mac = hmac.new(pem.encode(), f"{header}.{body}".encode(), hashlib.sha256).digest()
    sig = _b64(mac)
    with pytest.raises(InvalidCredentials):
        await v.principal(f"{header}.{body}.{sig}")
    # ... while a real RS256 token from the private key passes.
    assert (await v.principal(signed(rsa_key(), "RS256"))).user == "alice"


async def test_an_rs256_token_is_refused_when_only_hs256_is_configured() -> None:
    with pytest.raises(InvalidCredentials, match="RS256"):
        await hs().principal(signed(rsa_key(), "RS256"))


async def test_rs256_and_es256_tokens_verify_with_a_public_key() -> None:
    rs = verifier(jwt_public_key=public_pem(rsa_key()))
    assert (await rs.principal(signed(rsa_key(), "RS256"))).user == "alice"
    es = verifier(jwt_public_key=public_pem(ec_key()))
    assert (await es.principal(signed(ec_key(), "ES256"))).user == "alice"
    with pytest.raises(InvalidCredentials):  # an ES256 token against the RSA key
        await rs.principal(signed(ec_key(), "ES256"))


async def test_the_public_key_may_be_a_file(tmp_path: Any) -> None:
    path = tmp_path / "key.pem"
    path.write_text(public_pem(rsa_key()))
    v = verifier(jwt_public_key=str(path))
    assert (await v.principal(signed(rsa_key(), "RS256"))).user == "alice"


async def test_an_expired_token_is_token_expired_not_invalid() -> None:
    with pytest.raises(TokenExpiredError):
        await hs().principal(hs256(exp=int(time.time()) - 5))


async def test_leeway_accepts_a_token_just_past_exp() -> None:
    v = verifier(jwt_secret=SECRET, jwt_leeway=30)
    assert (await v.principal(hs256(exp=int(time.time()) - 5))).user == "alice"


@pytest.mark.parametrize(
    ("claim", "value"),
    [
        ("exp", "9999999999"),  # pyjwt alone takes int("9999999999") for a date
        ("exp", " 9999999999 "),
        ("exp", True),
        ("exp", [9999999999]),
        ("nbf", "1"),
        ("iat", "1"),
        ("nbf", False),
    ],
)
async def test_exp_nbf_and_iat_must_be_numeric_dates_not_strings(claim: str, value: Any) -> None:
    with pytest.raises(InvalidCredentials, match=r"NumericDate|must be an integer"):
        await hs().principal(hs256(**{claim: value}))


async def test_numeric_dates_may_be_integers_or_fractions() -> None:
    now = time.time()
    token = hs256(exp=now + 300.5, nbf=int(now) - 10, iat=now - 1.25)
    principal = await hs().principal(token)
    assert principal.expires == pytest.approx(now + 300.5)


@pytest.mark.parametrize("missing", ["exp", "sub"])
async def test_exp_and_sub_are_required(missing: str) -> None:
    with pytest.raises(InvalidCredentials):
        await hs().principal(hs256(**{missing: None}))


async def test_audience_and_issuer_are_checked_when_configured() -> None:
    v = verifier(jwt_secret=SECRET, jwt_audience="roomcast", jwt_issuer="https://id.example")
    good = hs256(aud="roomcast", iss="https://id.example")
    assert (await v.principal(good)).user == "alice"
    for bad in (
        hs256(aud="other", iss="https://id.example"),
        hs256(iss="https://id.example"),  # no aud at all
        hs256(aud="roomcast", iss="https://evil.example"),
        hs256(aud="roomcast"),
    ):
        with pytest.raises(InvalidCredentials):
            await v.principal(bad)


async def test_an_audience_is_ignored_when_none_is_configured() -> None:
    assert (await hs().principal(hs256(aud="anything"))).user == "alice"


@pytest.mark.parametrize(
    "claims",
    [
        {"rooms": "chat:*"},  # a single pattern as a string is accepted
    ],
)
async def test_a_single_pattern_may_be_a_string(claims: dict[str, Any]) -> None:
    principal = await hs().principal(hs256(**claims))
    assert principal.subscribe.matches("chat:x")


@pytest.mark.parametrize(
    "claims",
    [{"rooms": [1]}, {"rooms": {"a": 1}}, {"publish": [""]}, {"sub": 5}, {"name": ""}],
)
async def test_malformed_claims_are_invalid(claims: dict[str, Any]) -> None:
    with pytest.raises(InvalidCredentials):
        await hs().principal(hs256(**claims))


@pytest.mark.parametrize("garbage", ["", "abc", "a.b.c", "x" * 100, "eyJhbGciOi.."])
async def test_garbage_is_invalid(garbage: str) -> None:
    with pytest.raises(InvalidCredentials):
        await hs().principal(garbage)


def test_issue_token_makes_what_the_verifier_accepts() -> None:
    token = issue_token(SECRET, "bob", ttl=60, rooms=["chat:*"], publish=[], name="Bob")
    decoded = jwt.decode(token, SECRET, algorithms=["HS256"])
    assert decoded["sub"] == "bob"
    assert decoded["rooms"] == ["chat:*"]
    assert "publish" not in decoded
    assert 55 <= decoded["exp"] - time.time() <= 61


def test_settings_refuse_a_short_secret_and_jwt_without_keys() -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        Settings(jwt_secret="short")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="needs ROOMCAST_JWT_SECRET"):
        Settings(auth="jwt")
    with pytest.raises(ValueError, match="RS256 needs"):
        Settings(auth="jwt", jwt_secret=SECRET, jwt_algorithms="RS256")  # type: ignore[arg-type]


# -- JWKS, served by a real HTTP server on a free loopback port --------------------


class _Jwks(BaseHTTPRequestHandler):
    document: ClassVar[dict[str, Any]] = {}
    fetches: ClassVar[int] = 0

    def do_GET(self) -> None:
        type(self).fetches += 1
        body = json.dumps(self.document).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def jwks_url() -> Iterator[str]:
    _Jwks.document = jwks("key-1")
    _Jwks.fetches = 0
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Jwks)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/.well-known/jwks.json"
    finally:
        server.shutdown()
        server.server_close()


async def test_jwks_keys_are_picked_by_kid_and_cached(jwks_url: str) -> None:
    v = verifier(jwt_jwks_url=jwks_url)
    for _ in range(3):
        assert (await v.principal(signed(rsa_key(), "RS256", kid="key-1"))).user == "alice"
    assert _Jwks.fetches == 1
    with pytest.raises(InvalidCredentials):
        await v.principal(signed(rsa_key(), "RS256", kid="unknown"))


async def test_an_unreachable_jwks_is_unavailable_not_invalid() -> None:
    v = verifier(jwt_jwks_url="http://127.0.0.1:9/jwks.json")
    with pytest.raises(AuthUnavailable):
        await v.principal(signed(rsa_key(), "RS256", kid="key-1"))
