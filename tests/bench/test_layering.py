"""The bench is a client: of roomcast it may import only the protocol package."""

from __future__ import annotations

from pathlib import Path

from ..test_layers import PKG, imports_of

ALLOWED = {"bench", "protocol"}


def test_the_bench_imports_nothing_of_the_server_but_the_protocol() -> None:
    problems = []
    for path in (PKG / "bench").rglob("*.py"):
        if path.name == "__main__.py":  # `python -m roomcast.bench` is `roomcast bench`
            continue
        for module, line in imports_of(path):
            parts = module.split(".")
            if parts[0] == "roomcast" and len(parts) > 1 and parts[1] not in ALLOWED:
                problems.append(f"{path.relative_to(PKG)}:{line} imports {module}")
    assert problems == []
    assert Path(PKG / "bench" / "__init__.py").exists()
