"""Installs are independent: a server installed from a wheel keeps serving every page
while another virtualenv installs the same checkout editable (issue 18: a test run's
editable reinstall once deleted the pages a running server served).

To stay quick, the virtualenvs are made without pip and see this run's virtualenv's
site-packages for the dependencies (a ``.pth`` line: a plain path entry, so the
``.pth`` files in it, this checkout's editable install among them, are not run), and
roomcast itself is built with setuptools installed once into a folder (no isolated
build environment per install). roomcast comes only from the install under test: the
test checks where each venv imports it from.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import sysconfig
import time
import venv
from pathlib import Path

import httpx
import pytest

from roomcast.api.web import PAGES
from roomcast.testing import free_port

from .conftest import ROOT

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

PIP = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--no-input"]
SITE = f"lib/python{sys.version_info.major}.{sys.version_info.minor}/site-packages"


def run(command: list[str], env: dict[str, str] | None = None) -> str:
    result = subprocess.run(command, capture_output=True, text=True, timeout=180, env=env)
    assert result.returncode == 0, f"{command}\n{result.stdout}\n{result.stderr}"
    return result.stdout


def source_copy(dest: Path) -> Path:
    """The files a build reads, copied: builds and the editable install write into the
    tree they are given (build/, *.egg-info), and this checkout is shared."""
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info", "build")
    shutil.copytree(ROOT / "server", dest / "server", ignore=ignore)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, dest / name)
    return dest


def bare_venv(path: Path, *paths: Path) -> Path:
    """A virtualenv without pip whose ``sys.path`` ends with ``paths``."""
    venv.EnvBuilder(with_pip=False, symlinks=True).create(path)
    (path / SITE / "zz-shared.pth").write_text("".join(f"{p}\n" for p in paths))
    return path / "bin" / "python"


def imported_from(python: Path) -> Path:
    code = "import roomcast; print(roomcast.__file__)"
    return Path(run([str(python), "-c", code], env=clean_env()).strip())


def clean_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ROOMCAST_")}
    env.pop("PYTHONPATH", None)
    return env


def every_page(web: Path) -> list[str]:
    """The pages and every file of the installed ``web`` folder, as URLs paths."""
    assets = sorted(p.name for p in web.iterdir() if p.suffix in (".js", ".css", ".svg"))
    assert "roomcast.js" in assets
    assert "style.css" in assets
    return [*PAGES, "/roomcast.js", *(f"/web/{name}" for name in assets), "/asyncapi", "/docs"]


def assert_serves(base: str, paths: list[str]) -> None:
    with httpx.Client(base_url=base, timeout=10) as http:
        answers = {path: http.get(path).status_code for path in paths}
    assert answers == dict.fromkeys(paths, 200)


def test_an_editable_install_elsewhere_leaves_a_running_server_serving_every_page(
    tmp_path: Path,
) -> None:
    source = source_copy(tmp_path / "checkout")
    shared = [
        Path(p) for p in dict.fromkeys(sysconfig.get_paths()[k] for k in ("purelib", "platlib"))
    ]
    tools = tmp_path / "build-tools"  # the build backend pyproject.toml asks for
    run([*PIP, "install", "-q", "--target", str(tools), "setuptools>=77"])

    # A: a fresh venv, roomcast installed from its wheel (not editable), serving.
    python_a = bare_venv(tmp_path / "a", tools, *shared)
    run([*PIP, "--python", str(python_a), "install", "-q", "--no-deps",
         "--no-build-isolation", str(source)])  # fmt: skip
    site_a = tmp_path / "a" / SITE
    assert imported_from(python_a) == site_a / "roomcast" / "__init__.py"
    pages = every_page(site_a / "roomcast" / "web")
    port = free_port()
    log_path = tmp_path / "serve-a.log"
    env = clean_env() | {"ROOMCAST_PORT": str(port), "ROOMCAST_LOG_LEVEL": "warning"}
    workdir = tmp_path / "run-a"
    workdir.mkdir()
    with log_path.open("wb") as log:
        server = subprocess.Popen(
            [str(tmp_path / "a" / "bin" / "roomcast"), "serve"], cwd=workdir, env=env,
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert server.poll() is None, log_path.read_text()
            try:
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, log_path.read_text()
            time.sleep(0.05)
        assert_serves(base, pages)

        # B: another venv installs the same checkout editable.
        python_b = bare_venv(tmp_path / "b", tools, *shared)
        run([*PIP, "--python", str(python_b), "install", "-q", "--no-deps",
             "--no-build-isolation", "-e", str(source)])  # fmt: skip
        assert imported_from(python_b) == source / "server" / "roomcast" / "__init__.py"
        assert imported_from(python_a) == site_a / "roomcast" / "__init__.py"
        assert_serves(base, pages)

        # A serves its own copy: the checkout's pages going away changes nothing.
        (source / "server" / "roomcast" / "web").rename(source / "web-moved")
        assert_serves(base, pages)
        assert server.poll() is None
    finally:
        os.killpg(server.pid, signal.SIGKILL)
        server.wait(10)
    assert "Traceback" not in log_path.read_text()
