"""Error responses the routers alone cannot get right."""

from __future__ import annotations

import functools
import re

from fastapi import FastAPI, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.responses import Response
from starlette.exceptions import HTTPException

__all__ = ["install_error_handlers"]


@functools.cache
def _template(path: str) -> re.Pattern[str]:
    """``/rooms/{room}/messages`` as a pattern of the paths it serves."""
    return re.compile("^" + re.sub(r"\\{[^/]+?\\}", "[^/]+", re.escape(path)) + "$")


def allowed_methods(app: FastAPI, path: str) -> set[str]:
    """Every method the OpenAPI document lists for ``path`` (HEAD with GET)."""
    methods: set[str] = set()
    for template, operations in app.openapi().get("paths", {}).items():
        if _template(template).match(path):
            methods |= {method.upper() for method in operations}
    if "GET" in methods:
        methods.add("HEAD")
    return methods


async def _allow_every_method(request: Request, exc: Exception) -> Response:
    """A 405 lists every method of the path (RFC 9110). Starlette lists only those
    of the first route whose path matches, and GET and POST of a path are two routes."""
    assert isinstance(exc, HTTPException)
    if exc.status_code == 405:
        methods = allowed_methods(request.app, request.url.path)
        if methods:
            exc.headers = {**(exc.headers or {}), "Allow": ", ".join(sorted(methods))}
    return await http_exception_handler(request, exc)


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(HTTPException, _allow_every_method)
