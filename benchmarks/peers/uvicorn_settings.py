"""The uvicorn WebSocket settings every Python peer runs with, the ones roomcast
runs with (websockets-sansio, no compression, 20 s pings): in one place, so every
server in the comparison meets the same conditions."""

from __future__ import annotations

from typing import Any

WS_SETTINGS: dict[str, Any] = {
    "ws": "websockets-sansio",
    "ws_per_message_deflate": False,
    "ws_ping_interval": 20.0,
    "ws_ping_timeout": 20.0,
}
