"""The REST API's documentation pages with nothing loaded from elsewhere: Swagger UI
at the app's ``docs_url`` (``/docs``) and ReDoc at its ``redoc_url`` (``/redoc``).

FastAPI's own pages load their scripts, stylesheet and icon from a CDN, so on a
machine without Internet access they stay blank. :func:`offline_docs` replaces
them with the same pages whose files come from the installed ``fastapi-offline``
package (its ``static`` folder: Swagger UI's bundle and stylesheet, ReDoc's
standalone script, an icon), served here under ``/docs-assets/``.

Every URL a page uses is relative to the page (``openapi.json``,
``docs-assets/swagger-ui.css``), so the pages work under any prefix: a proxy
that strips one, a ``root_path``, a mounted sub-application. Only Swagger UI's
OAuth2 redirect is absolute, as in FastAPI (it needs the page's origin).

``create_app`` calls it; an application that mounts roomcast's router owns its
``/docs`` and may call ``roomcast.offline_docs(app)`` (docs/embedding.md).
"""

from __future__ import annotations

import posixpath
from importlib import metadata, resources
from pathlib import Path

from fastapi import FastAPI, Request, status
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse, PlainTextResponse, Response
from starlette.routing import Route

__all__ = ["ASSETS_PATH", "offline_docs"]

ASSETS_PATH = "/docs-assets"
ASSETS = {
    "swagger-ui-bundle.js": "text/javascript; charset=utf-8",
    "swagger-ui.css": "text/css; charset=utf-8",
    "redoc.standalone.js": "text/javascript; charset=utf-8",
    "favicon.png": "image/png",
}
PACKAGE = "fastapi_offline"
PATCHES = {
    "redoc.standalone.js": (
        b"https://cdn.redoc.ly/redoc/logo-mini.svg",
        b"data:image/svg+xml,%3Csvg xmlns='http://www.w3.org/2000/svg'/%3E",
    ),
}
"""The one URL elsewhere a file still names, and what it is served with instead:
ReDoc's sidebar footer loads Redocly's logo from its CDN once the page is shown
(an empty image here; the footer's text and link stay)."""


def assets_dir() -> Path:
    """The folder of the installed ``fastapi-offline`` package that holds the files."""
    return Path(str(resources.files(PACKAGE) / "static"))


def relative(target: str, page: str) -> str:
    """The URL of ``target``, a path of the app, as seen from a page at ``page``."""
    return posixpath.relpath(target, posixpath.dirname(page) or "/")


def offline_docs(app: FastAPI, *, assets_path: str = ASSETS_PATH) -> None:
    """Serve ``app``'s ``/docs`` and ``/redoc`` (its ``docs_url`` and ``redoc_url``;
    ``None`` turns a page off) with their files from ``assets_path``, replacing
    FastAPI's pages that load them from a CDN. Call it once, after ``FastAPI(...)``."""
    openapi_url, docs_url, redoc_url = app.openapi_url, app.docs_url, app.redoc_url
    pages = {url for url in (docs_url, redoc_url) if url}
    app.router.routes[:] = [
        route
        for route in app.router.routes
        if not (isinstance(route, Route) and route.path in pages and not route.include_in_schema)
    ]
    if openapi_url is None:
        return
    version = metadata.version("fastapi-offline")  # in the URLs: a new one is fetched anew

    def asset(page: str, name: str) -> str:
        return relative(f"{assets_path}/{name}", page) + f"?v={version}"

    if docs_url:
        swagger_page = docs_url

        async def swagger_ui(request: Request) -> HTMLResponse:
            oauth2_redirect = app.swagger_ui_oauth2_redirect_url
            if oauth2_redirect:
                oauth2_redirect = request.scope.get("root_path", "").rstrip("/") + oauth2_redirect
            return get_swagger_ui_html(
                openapi_url=relative(openapi_url, swagger_page),
                title=f"{app.title} - Swagger UI",
                swagger_js_url=asset(swagger_page, "swagger-ui-bundle.js"),
                swagger_css_url=asset(swagger_page, "swagger-ui.css"),
                swagger_favicon_url=asset(swagger_page, "favicon.png"),
                oauth2_redirect_url=oauth2_redirect,
                init_oauth=app.swagger_ui_init_oauth,
                # No badge from validator.swagger.io: the page asks nothing of anyone else.
                swagger_ui_parameters={**(app.swagger_ui_parameters or {}), "validatorUrl": None},
            )

        app.add_route(docs_url, swagger_ui, include_in_schema=False)

    if redoc_url:
        redoc_page = redoc_url

        async def redoc(request: Request) -> HTMLResponse:
            return get_redoc_html(
                openapi_url=relative(openapi_url, redoc_page),
                title=f"{app.title} - ReDoc",
                redoc_js_url=asset(redoc_page, "redoc.standalone.js"),
                redoc_favicon_url=asset(redoc_page, "favicon.png"),
                with_google_fonts=False,
            )

        app.add_route(redoc_url, redoc, include_in_schema=False)

    folder = assets_dir()
    patched: dict[str, bytes] = {}  # read once, on the first request

    async def docs_asset(request: Request) -> Response:
        name = request.path_params["name"]
        media_type = ASSETS.get(name)
        if media_type is None or not (folder / name).is_file():
            return PlainTextResponse("not found", status.HTTP_404_NOT_FOUND)
        headers = {"Cache-Control": "public, max-age=86400", "X-Content-Type-Options": "nosniff"}
        patch = PATCHES.get(name)
        if patch is None:
            return FileResponse(folder / name, media_type=media_type, headers=headers)
        body = patched.get(name)
        if body is None:
            body = patched[name] = (folder / name).read_bytes().replace(*patch)
        return Response(body, media_type=media_type, headers=headers)

    # Routes of the app itself, like FastAPI's pages: outside its dependencies, as the pages are.
    app.add_route(assets_path + "/{name}", docs_asset, include_in_schema=False)
