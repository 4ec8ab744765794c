"""The layer rule of the design (protocol, hub, transports, api, ...), checked on
the source: imports only point down the layers."""

from __future__ import annotations

import ast
from pathlib import Path

PKG = Path(__file__).resolve().parent.parent / "server" / "roomcast"

# For each layer: the roomcast packages and the third-party modules it must not import.
FORBIDDEN: dict[str, tuple[set[str], set[str]]] = {
    "protocol": (
        {"hub", "transports", "api", "db", "auth", "app", "cli", "settings", "bench", "testing"},
        {
            "asyncio",
            "fastapi",
            "starlette",
            "redis",
            "sqlmodel",
            "sqlalchemy",
            "sse_starlette",
            "uvicorn",
        },
    ),
    "hub": (
        {"transports", "api", "db", "auth", "app", "cli", "bench", "testing"},
        {"fastapi", "starlette", "sqlmodel", "sqlalchemy", "sse_starlette", "uvicorn"},
    ),
    "transports": ({"api", "db", "app", "cli", "bench"}, {"sqlmodel", "sqlalchemy", "redis"}),
    "api": (set(), {"redis", "sqlmodel", "sqlalchemy"}),
}


def imports_of(path: Path) -> list[tuple[str, int]]:
    """(absolute module, line) for every import in ``path``."""
    tree = ast.parse(path.read_text())
    package = ".".join(("roomcast", *path.relative_to(PKG).parent.parts))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            found.append((module, node.lineno))
    return found


def test_each_layer_imports_only_what_is_below_it() -> None:
    problems = []
    for layer, (own, third_party) in FORBIDDEN.items():
        for path in (PKG / layer).rglob("*.py"):
            for module, line in imports_of(path):
                parts = module.split(".")
                bad_own = parts[0] == "roomcast" and len(parts) > 1 and parts[1] in own
                if bad_own or parts[0] in third_party:
                    problems.append(f"{path.relative_to(PKG)}:{line} imports {module}")
    assert problems == []


# Layers that may import only the roomcast packages listed (and themselves).
ONLY: dict[str, set[str]] = {
    # The Python client talks to a server over the wire: the protocol, nothing of the server.
    "client": {"protocol", "client"},
}
SERVER_STACK = {
    "fastapi",
    "starlette",
    "sse_starlette",
    "uvicorn",
    "redis",
    "sqlmodel",
    "sqlalchemy",
}


def test_the_client_imports_only_the_protocol_and_no_server_stack() -> None:
    problems = []
    for layer, allowed in ONLY.items():
        for path in (PKG / layer).rglob("*.py"):
            for module, line in imports_of(path):
                parts = module.split(".")
                bad_own = parts[0] == "roomcast" and (len(parts) < 2 or parts[1] not in allowed)
                if bad_own or parts[0] in SERVER_STACK:
                    problems.append(f"{path.relative_to(PKG)}:{line} imports {module}")
    assert list((PKG / "client").glob("*.py")) != []
    assert problems == []


def test_only_db_imports_sqlmodel() -> None:
    problems = [
        f"{path.relative_to(PKG)}:{line}"
        for path in PKG.rglob("*.py")
        if path.relative_to(PKG).parts[0] != "db"
        for module, line in imports_of(path)
        if module.split(".")[0] == "sqlmodel"
    ]
    assert problems == []


def test_the_checker_sees_relative_imports() -> None:
    modules = {m for m, _ in imports_of(PKG / "hub" / "hub.py")}
    assert "roomcast.protocol.events" in modules
