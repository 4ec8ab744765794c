"""The one place that answers "may this principal do this in this room".

WebSocket, SSE and REST all ask the :class:`Authority`:

* :meth:`Authority.authenticate` turns a token (or none) into a principal;
* :meth:`Authority.rest_principal` does the same for REST, where API keys
  also count;
* :meth:`Authority.may_subscribe` (also: history and presence) and
  :meth:`Authority.may_publish` decide per room;
* :meth:`Authority.may_administer` guards room creation and deletion.

The rules, by ``auth`` setting:

==========================  ======================  ============================
who                         ``auth=off``            ``auth=jwt``
==========================  ======================  ============================
no token (WS, SSE)          every room              public namespaces, read only
token                       (tokens are ignored)    ``rooms`` / ``publish`` claims,
                                                    plus public namespaces to read
REST, no credentials        everything, unless      public namespaces, read only
                            API keys are set: read
API key (REST, WS, SSE)     everything              everything
==========================  ======================  ============================

A namespace with ``client_publish=false`` refuses publishes from everyone but
API keys.

When the application authenticates (``Roomcast(authenticate=...)``,
:attr:`Authority.host_authenticates`), its principal replaces tokens on every
transport and the ``auth`` setting plays no part; API keys still make a REST
caller an administrator, and the room patterns and namespaces still decide.
"""

from __future__ import annotations

import hmac
import logging
import secrets

from ..settings import Settings
from .errors import InvalidCredentials
from .limits import ConnectionLimiter
from .namespaces import Namespaces, load_namespaces
from .origins import OriginPolicy
from .principal import ALL, NONE, Principal
from .tokens import TokenVerifier

__all__ = ["Authority"]

log = logging.getLogger("roomcast.auth")


def anonymous_id() -> str:
    return f"anon-{secrets.token_hex(3)}"


class Authority:
    def __init__(self, settings: Settings, *, host_authenticates: bool = False) -> None:
        self.host_authenticates = host_authenticates
        """The application's ``authenticate`` makes every principal (no tokens)."""
        self.required = settings.auth == "jwt" or host_authenticates
        self.verifier = TokenVerifier(settings) if settings.auth == "jwt" else None
        self.namespaces = Namespaces(load_namespaces(settings), presence=settings.presence)
        self.origins = OriginPolicy(settings.allowed_origins)
        self.limiter = ConnectionLimiter(
            per_user=settings.max_connections_per_user, per_ip=settings.max_connections_per_ip
        )
        self.cookie = settings.auth_cookie
        self.leeway = settings.jwt_leeway
        self._api_keys = [key.get_secret_value().encode() for key in settings.api_keys]

    def warn_if_open(self) -> None:
        """Log loudly when anyone may do anything (the zero-setup default)."""
        if self.host_authenticates:
            log.info("connections are authenticated by the application (authenticate)")
        elif not self.required:
            log.warning(
                "ROOMCAST_AUTH=off: anyone who can reach this server may read and publish "
                "in every room%s. Set ROOMCAST_AUTH=jwt before exposing it (docs/security.md).",
                "" if self._api_keys else ", and create and delete rooms over REST",
            )

    @property
    def anonymous_allowed(self) -> bool:
        """Whether a client without a token may connect at all."""
        if self.host_authenticates:
            return False
        return not self.required or self.namespaces.any_public

    def anonymous(self, name: str | None = None) -> Principal:
        """A client without a token, shown as ``name`` (or a generated one)."""
        user = anonymous_id()
        everything = ALL if not self.required else NONE
        return Principal(user, name or user, everything, everything, anonymous=True)

    async def authenticate(self, token: str | None, name: str | None = None) -> Principal:
        """The principal of a WebSocket or SSE client.

        A token that is one of the API keys makes an administrator, as over
        REST (the admin page connects so). Otherwise, with ``auth=off`` tokens
        are not looked at. With ``auth=jwt`` a token must be valid; without one
        the client is anonymous if some namespace is public. Raises the errors
        of auth/errors.py.
        """
        if self.host_authenticates:
            raise InvalidCredentials("the application authenticates connections")
        if token is not None and self._api_keys and self.api_key(token):
            return Principal("api", name or "api", ALL, ALL, admin=True)  # the admin page
        if self.verifier is None:
            return self.anonymous(name)
        if token is None:
            if not self.anonymous_allowed:
                raise InvalidCredentials("a token is required")
            return self.anonymous(name)
        return await self.verifier.principal(token)

    def api_key(self, key: str) -> bool:
        """Whether ``key`` is one of the configured API keys (constant time)."""
        given = key.encode()
        found = False
        for candidate in self._api_keys:
            found |= hmac.compare_digest(given, candidate)
        return found

    async def rest_principal(
        self, bearer: str | None, api_key: str | None, host: Principal | None = None
    ) -> Principal:
        """The principal of a REST request from its ``Authorization: Bearer`` and
        ``X-API-Key`` headers. A bearer may be an API key or (``auth=jwt``) a token.

        When the application authenticates, ``host`` is what its ``authenticate``
        returned: an API key (header, or a bearer that is one) still makes the
        caller an administrator; otherwise ``host`` is the caller, and without
        one the request is refused (a bearer that is not an API key is the
        application's business)."""
        if self.host_authenticates:
            return self._host_rest_principal(bearer, api_key, host)
        # Every credential presented must hold: one that does not is refused, never ignored.
        admin = False
        if api_key is not None:
            if not self.api_key(api_key):
                raise InvalidCredentials("unknown API key")
            admin = True
        token_principal = None
        if bearer is not None:
            if self.api_key(bearer):
                admin = True
            elif self.verifier is None:
                raise InvalidCredentials("unknown API key (tokens are not used: auth=off)")
            else:
                token_principal = await self.verifier.principal(bearer)
        if admin:
            return Principal("api", "api", ALL, ALL, admin=True)
        if token_principal is not None:
            return token_principal
        if not self.required and not self._api_keys:
            return Principal("api", "api", ALL, ALL, anonymous=True, admin=True)
        if not self.required:  # API keys guard REST writes; reads stay open
            return Principal("api", "api", ALL, NONE, anonymous=True)
        return Principal("api", "api", NONE, NONE, anonymous=True)

    def _host_rest_principal(
        self, bearer: str | None, api_key: str | None, host: Principal | None
    ) -> Principal:
        if api_key is not None:
            if not self.api_key(api_key):
                raise InvalidCredentials("unknown API key")
            return Principal("api", "api", ALL, ALL, admin=True)
        if bearer is not None and self.api_key(bearer):
            return Principal("api", "api", ALL, ALL, admin=True)
        if host is None:
            raise InvalidCredentials("not authenticated")
        return host

    def may_subscribe(self, principal: Principal, room: str) -> bool:
        """Subscribe, read history and presence."""
        return (
            principal.admin or principal.subscribe.matches(room) or self.namespaces.of(room).public
        )

    def may_publish(self, principal: Principal, room: str) -> bool:
        if principal.admin:
            return True
        return self.namespaces.of(room).client_publish and principal.publish.matches(room)

    def may_write(self, principal: Principal) -> bool:
        """Whether the principal may publish somewhere or administer: what every REST
        request with a body does. False lets REST refuse one before reading it."""
        return principal.admin or bool(principal.publish)

    def may_administer(self, principal: Principal) -> bool:
        """Create, list and delete rooms (REST)."""
        return principal.admin
