"""The browser side, served as static files: ``/`` (an index of the pages),
``/chat``, ``/dashboard``, ``/admin`` (its API: api/admin.py), ``/roomcast.js``
and the pages' own files under ``/web/``. No build step: the files of the
package's ``web/`` folder (``roomcast/web``, package data) are sent as they are
(docs/client.md). Pages get a Content-Security-Policy that allows only this
origin's scripts, styles and connections, so a message that slipped past the
pages' escaping still could not load or run anything."""

from __future__ import annotations

import logging
import re
from importlib import resources
from pathlib import Path

from fastapi import APIRouter, HTTPException, status
from fastapi.responses import FileResponse

__all__ = ["default_web_dir", "web_router"]

log = logging.getLogger("roomcast.web")

PAGES = {
    "/": "index.html",
    "/chat": "chat.html",
    "/dashboard": "dashboard.html",
    "/admin": "admin.html",
}
ADMIN_PAGE = "/admin"
"""Served only where the admin API is (api/admin.py, ``available``)."""
ASSET = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}\.(?:js|css|svg)")
MEDIA_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
}
PAGE_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
    "frame-ancestors 'none'"
)
HEADERS = {"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"}


def default_web_dir() -> Path:
    """The ``web`` folder inside the installed ``roomcast`` package, however it was
    installed (a wheel, ``pip install .`` or an editable checkout): the files travel
    with the code, so one install never changes what another serves."""
    return Path(str(resources.files("roomcast") / "web"))


def web_router(directory: Path, *, admin: bool = True) -> APIRouter:
    """The routes that send the files of ``directory``; ``admin``: the admin page too."""
    router = APIRouter(include_in_schema=False)
    if not (directory / "roomcast.js").is_file():
        log.warning("web pages not found in %s: set ROOMCAST_WEB_DIR", directory)

    def send(name: str) -> FileResponse:
        path = directory / name
        if not path.is_file():
            raise HTTPException(status.HTTP_404_NOT_FOUND, "not found")
        headers = dict(HEADERS)
        if path.suffix == ".html":
            headers["Content-Security-Policy"] = PAGE_POLICY
            headers["Referrer-Policy"] = "no-referrer"
        return FileResponse(path, media_type=MEDIA_TYPES[path.suffix], headers=headers)

    def page(path: str, name: str) -> None:
        async def endpoint() -> FileResponse:
            return send(name)

        endpoint.__name__ = f"page_{name.split('.')[0]}"
        router.add_api_route(path, endpoint, methods=["GET"])

    for path, name in PAGES.items():
        if admin or path != ADMIN_PAGE:
            page(path, name)

    @router.get("/roomcast.js")
    async def client_library() -> FileResponse:
        return send("roomcast.js")

    @router.get("/web/{name}")
    async def asset(name: str) -> FileResponse:
        if not ASSET.fullmatch(name):
            raise HTTPException(status.HTTP_404_NOT_FOUND, "not found")
        return send(name)

    return router
