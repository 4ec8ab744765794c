"""What a connection needs from its Roomcast: the hub, the settings, the
authority, the application's hooks, and a way to start the drain.

One :class:`Services` per Roomcast instance, shared by all its connections;
the transports get it instead of importing the app (a layer above them).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from ..auth import Authority
from ..hooks import HookRunner
from ..hub.hub import Hub
from ..settings import Settings
from .direct import DirectWriter

__all__ = ["Services"]

log = logging.getLogger("roomcast.websocket")


class Services:
    __slots__ = ("_path_noted", "authority", "hooks", "hub", "server_shutdown", "settings")

    def __init__(
        self,
        hub: Hub,
        settings: Settings,
        authority: Authority,
        hooks: HookRunner,
        server_shutdown: Callable[[], None],
    ) -> None:
        self.hub = hub
        self.settings = settings
        self.authority = authority
        self.hooks = hooks
        self.server_shutdown = server_shutdown
        """Called when the server starts its own shutdown (uvicorn's, without our
        signal handlers): starts the drain, so clients get 3000, not 1012."""
        self._path_noted = False

    def note_websocket_path(self, writer: DirectWriter | None) -> None:
        """Log once which WebSocket path this instance's connections take."""
        if self._path_noted:
            return
        self._path_noted = True
        if writer is not None and writer.usable:
            log.info("WebSocket fan-out: direct frame writes (roomcast's uvicorn protocol)")
        elif writer is not None:
            log.info("WebSocket fan-out: through ASGI sends (per-message compression is on)")
        else:
            log.info(
                "WebSocket fan-out: through ASGI sends, the slower path. Run the app with "
                "roomcast.run(app) or uvicorn --ws roomcast:WebSocketProtocol for direct "
                "frame writes (docs/embedding.md)"
            )
