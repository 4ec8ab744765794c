"""Run the third-party AsyncAPI tools of tests/asyncapi (node scripts over the npm
packages its package-lock.json pins, which scripts/test installs with ``npm ci``)."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

from ..conftest import ROOT, require

TOOLS = ROOT / "tests" / "asyncapi"
NODE_TIMEOUT = 120.0  # a guard for a hung node: one run takes a few seconds


def node() -> str:
    """The node binary, once the packages are installed (skip locally, fail in CI)."""
    found = shutil.which("node")
    require(found is not None, "node (apt-get install nodejs npm)")
    for package in ("parser", "modelina"):
        installed = (TOOLS / "node_modules" / "@asyncapi" / package / "package.json").is_file()
        require(installed, f"@asyncapi/{package} (npm ci --prefix tests/asyncapi)")
    assert found is not None
    return found


def run_tool(script: str, *args: Path) -> tuple[int, dict[str, Any]]:
    """``node tests/asyncapi/<script> ARGS...``: its exit status and the JSON it prints."""
    done = subprocess.run(
        [node(), str(TOOLS / script), *map(str, args)],
        capture_output=True,
        text=True,
        timeout=NODE_TIMEOUT,
        check=False,
    )
    try:
        report = json.loads(done.stdout)
    except json.JSONDecodeError:
        raise AssertionError(
            f"{script} exited {done.returncode} without a report:\n{done.stdout}\n{done.stderr}"
        ) from None
    assert isinstance(report, dict)
    return done.returncode, report


def parse_document(document: dict[str, Any], path: Path) -> tuple[int, dict[str, Any]]:
    """Write ``document`` to ``path`` and parse it with the official parser
    (validate.mjs): exit status and ``{"valid", "version", "diagnostics"}``."""
    path.write_text(json.dumps(document))
    return run_tool("validate.mjs", path)
