"""``connect()``: open a :class:`Client` with ``async with`` or ``await``."""

from __future__ import annotations

from collections.abc import Callable, Generator, Mapping
from types import TracebackType
from typing import Any

from .connection import Client
from .options import ClientOptions
from .state import StateChange
from .tokens import TokenProvider

__all__ = ["Connecting", "connect"]


class Connecting:
    """What :func:`connect` returns: use it with ``async with`` (closed on exit), or
    ``await`` it (then ``await rc.close()``)."""

    def __init__(self, client: Client) -> None:
        self.client = client

    async def _open(self) -> Client:
        await self.client.start()
        return self.client

    def __await__(self) -> Generator[Any, None, Client]:
        return self._open().__await__()

    async def __aenter__(self) -> Client:
        return await self._open()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.client.close()


def connect(
    url: str,
    *,
    token: str | None = None,
    token_provider: TokenProvider | None = None,
    name: str | None = None,
    headers: Mapping[str, str] | None = None,
    on_state: Callable[[StateChange], None] | None = None,
    options: ClientOptions | None = None,
) -> Connecting:
    """Connect to roomcast's WebSocket at ``url`` (``ws://host:port/ws``).

    ``token``: sent in the ``connect`` frame (``auth=jwt``). ``token_provider``: an
    async callable returning a fresh token, asked for every new connection (the first
    one too, unless ``token`` is given) and before the token expires, so a 3003
    (token expired) close is followed by a reconnect instead of the end. ``name``:
    the display name when the server does not use tokens. ``headers``: sent with the
    handshake (a host app's session cookie). ``on_state``: called with every
    :class:`StateChange`. ``options``: timings and bounds (:class:`ClientOptions`).

    Entering ``async with`` waits for the first connection (at most
    ``options.connect_timeout``), and raises :class:`ConnectionFailed` if the
    server refuses it for good (a bad token: 3500).
    """
    client = Client(
        url,
        token=token,
        token_provider=token_provider,
        name=name,
        headers=headers,
        on_state=on_state,
        options=options,
    )
    return Connecting(client)
