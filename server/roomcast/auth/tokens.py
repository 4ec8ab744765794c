"""JWT verification with pyjwt.

The accepted algorithms come from the settings, never from the token: a
token whose header names any other ``alg`` (``none`` included) is refused
before any key is touched. HMAC algorithms are verified with the secret only
and asymmetric ones with the public key (or the JWKS key named by ``kid``)
only, so a public key can never be used as an HMAC secret.

Claims: ``sub`` and ``exp`` are required; ``name`` (display name), ``rooms``
(patterns it may subscribe to) and ``publish`` (patterns it may publish to)
are optional, and so is ``admin`` (``true``: an API key's powers, the admin
page included); ``iss`` and ``aud`` are checked when the settings name them.
``exp``, ``nbf`` and ``iat`` must be NumericDates (RFC 7519: a JSON number):
pyjwt converts them with ``int()``, so it takes ``"exp": "9999999999"`` (a
string) for a date; roomcast refuses such a token.
"""

from __future__ import annotations

import asyncio
import math
import time
from pathlib import Path
from typing import Any

import jwt

from ..protocol.frames import MAX_NAME_LENGTH
from ..settings import HMAC_ALGORITHMS, Settings
from .errors import AuthUnavailable, InvalidCredentials, TokenExpiredError
from .principal import Patterns, Principal

__all__ = ["TokenVerifier", "issue_token"]

MAX_PATTERNS = 256
MAX_PATTERN_LENGTH = 256
MAX_SUBJECT_LENGTH = 256
DATE_CLAIMS = ("exp", "nbf", "iat")


def _check_dates(claims: dict[str, Any]) -> None:
    """Each date claim present is a finite JSON number (not a string, not a bool)."""
    for claim in DATE_CLAIMS:
        value = claims.get(claim)
        if value is None:
            continue
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
        ):
            raise InvalidCredentials(f"{claim} must be a NumericDate (a number of seconds)")


def _public_key(value: str | None) -> str | None:
    """PEM text as given, or read from the path it names."""
    if value is None or value.lstrip().startswith("-----BEGIN"):
        return value
    return Path(value).read_text()


class TokenVerifier:
    """Verifies tokens against the configured keys and turns them into principals."""

    def __init__(self, settings: Settings) -> None:
        self.algorithms = frozenset(settings.accepted_algorithms())
        self.secret = settings.jwt_secret.get_secret_value() if settings.jwt_secret else None
        self.public_key = _public_key(settings.jwt_public_key)
        self.issuer = settings.jwt_issuer
        self.audience = settings.jwt_audience
        self.leeway = settings.jwt_leeway
        self.jwks: jwt.PyJWKClient | None = None
        if settings.jwt_jwks_url:
            self.jwks = jwt.PyJWKClient(
                settings.jwt_jwks_url.get_secret_value(),
                cache_jwk_set=True,
                lifespan=settings.jwks_cache_ttl,
                timeout=settings.jwks_timeout,
            )

    async def _key(self, token: str, alg: str) -> Any:
        if alg in HMAC_ALGORITHMS:
            return self.secret
        if self.jwks is not None:
            try:
                return (await asyncio.to_thread(self.jwks.get_signing_key_from_jwt, token)).key
            except jwt.PyJWKClientConnectionError as exc:
                raise AuthUnavailable(f"JWKS unavailable: {exc}") from None
            except (jwt.PyJWKClientError, jwt.PyJWKError) as exc:
                raise InvalidCredentials(f"no key for this token: {exc}") from None
        return self.public_key

    async def claims(self, token: str) -> dict[str, Any]:
        """The verified claims of ``token``.

        Raises :class:`InvalidCredentials`, :class:`TokenExpiredError`, or
        :class:`AuthUnavailable` when the JWKS cannot be fetched.
        """
        try:
            header = jwt.get_unverified_header(token)
        except jwt.InvalidTokenError:
            raise InvalidCredentials("not a JWT") from None
        alg = header.get("alg")
        if not isinstance(alg, str) or alg not in self.algorithms:
            raise InvalidCredentials(f"algorithm {str(alg)[:16]!r} is not accepted")
        key = await self._key(token, alg)
        if key is None:
            raise InvalidCredentials(f"no key configured for {alg}")
        try:
            claims = self._decode(token, key, alg, check_dates=True)
        except jwt.ExpiredSignatureError:
            # "exp": true is int 1 to pyjwt: expired. Whether it was a date at all
            # decides between "expired" (get a new token) and "invalid".
            _check_dates(self._decode(token, key, alg, check_dates=False))
            raise TokenExpiredError("token expired") from None
        _check_dates(claims)
        return claims

    def _decode(self, token: str, key: Any, alg: str, *, check_dates: bool) -> dict[str, Any]:
        """pyjwt's verified claims; InvalidCredentials for anything but an expired token
        (``jwt.ExpiredSignatureError``). ``check_dates=False``: ``exp``, ``nbf`` and
        ``iat`` are not compared with the clock."""
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key,
                algorithms=[alg],
                audience=self.audience,
                issuer=self.issuer,
                leeway=self.leeway,
                options={
                    "require": ["exp", "sub"],
                    "verify_aud": self.audience is not None,
                    "verify_exp": check_dates,
                    "verify_nbf": check_dates,
                    "verify_iat": check_dates,
                },
            )
        except jwt.ExpiredSignatureError:
            raise
        except (jwt.PyJWTError, ValueError, TypeError) as exc:  # InvalidKeyError: a key of
            # another kind (an RSA key for an ES256 token) is not a token error in pyjwt
            raise InvalidCredentials(f"invalid token: {exc}") from None
        return claims

    async def principal(self, token: str) -> Principal:
        """The principal a valid token names (see :meth:`claims` for errors)."""
        claims = await self.claims(token)
        sub = claims.get("sub")
        if not isinstance(sub, str) or not 0 < len(sub) <= MAX_SUBJECT_LENGTH:
            raise InvalidCredentials("sub must be a string of 1-256 characters")
        name = claims.get("name", sub)
        if not isinstance(name, str) or not name:
            raise InvalidCredentials("name must be a non-empty string")
        admin = claims.get("admin", False)
        if not isinstance(admin, bool):
            raise InvalidCredentials("admin must be true or false")
        exp = claims["exp"]
        return Principal(
            user=sub,
            name=name[:MAX_NAME_LENGTH],
            subscribe=_patterns(claims, "rooms"),
            publish=_patterns(claims, "publish"),
            expires=float(exp),
            admin=admin,
        )


def _patterns(claims: dict[str, Any], claim: str) -> Patterns:
    value = claims.get(claim, [])
    if isinstance(value, str):
        value = [value]
    if (
        not isinstance(value, list)
        or len(value) > MAX_PATTERNS
        or not all(isinstance(p, str) and 0 < len(p) <= MAX_PATTERN_LENGTH for p in value)
    ):
        raise InvalidCredentials(f"{claim} must be a list of room patterns")
    return Patterns(value)


def issue_token(
    secret: str,
    sub: str,
    *,
    ttl: float,
    rooms: list[str],
    publish: list[str],
    name: str | None = None,
    issuer: str | None = None,
    audience: str | None = None,
    algorithm: str = "HS256",
    admin: bool = False,
) -> str:
    """An HS256 token for development and tests (``roomcast token``)."""
    now = int(time.time())
    claims: dict[str, Any] = {"sub": sub, "iat": now, "exp": now + int(ttl)}
    if name:
        claims["name"] = name
    if rooms:
        claims["rooms"] = rooms
    if publish:
        claims["publish"] = publish
    if issuer:
        claims["iss"] = issuer
    if audience:
        claims["aud"] = audience
    if admin:
        claims["admin"] = True
    return jwt.encode(claims, secret, algorithm=algorithm)
