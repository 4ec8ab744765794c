"""The protocol's AsyncAPI document, served: ``/asyncapi.json`` (the document for
the host and path it was asked on) and ``/asyncapi`` (the same document as a page
for people, rendered here with no script and no outside asset).

The document is generated from the protocol's models (protocol/asyncapi.py);
under a prefix (``include_router(rc.router, prefix="/rt")``) its server
``pathname`` is the prefix, so ``/rt/ws`` is where the channels point."""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from .. import __version__
from ..protocol.asyncapi import asyncapi_document
from .contract_page import render_page

__all__ = ["DOCUMENT_PATH", "PAGE_PATH", "router"]

DOCUMENT_PATH = "/asyncapi.json"
PAGE_PATH = "/asyncapi"

router = APIRouter(include_in_schema=False)


def _document(request: Request, path: str) -> dict[str, Any]:
    root = request.url.path.removesuffix(path)
    host = request.headers.get("host") or request.url.netloc or "localhost"
    return asyncapi_document(
        host=host, root=root, secure=request.url.scheme in ("https", "wss"), version=__version__
    )


@router.get(DOCUMENT_PATH)
async def asyncapi_json(request: Request) -> Response:
    body = orjson.dumps(_document(request, DOCUMENT_PATH))
    return Response(body, media_type="application/json", headers={"Cache-Control": "no-cache"})


@router.get(PAGE_PATH)
async def asyncapi_page(request: Request) -> HTMLResponse:
    docs_url = getattr(request.app, "docs_url", None)
    rest_docs = request.scope.get("root_path", "") + docs_url if docs_url else None
    page = render_page(_document(request, PAGE_PATH), rest_docs)
    return HTMLResponse(
        page,
        headers={
            "Cache-Control": "no-cache",
            "X-Content-Type-Options": "nosniff",
            "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; "
            "base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
        },
    )
