"""docs/testing-your-app.md's example runs as written: its files, in a folder of their
own, pass under pytest."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from roomcast.testing import postgres_available, redis_available

from ..conftest import require

pytestmark = pytest.mark.timeout(120)

DOC = Path(__file__).resolve().parents[2] / "docs" / "testing-your-app.md"

# A fenced python block whose first line names its file: "# myapp.py".
BLOCK = re.compile(r"```python\n# (?P<name>[\w.]+\.py)\n(?P<code>.*?)```", re.DOTALL)
UNNAMED = re.compile(r"```python\n(?!# [\w.]+\.py\n)(?P<code>.*?)```", re.DOTALL)


def run_pytest(folder: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ROOMCAST_", "PYTEST_"))}
    env["PYTHONPATH"] = str(folder)
    env["PYTEST_DISABLE_PLUGIN_AUTOLOAD"] = "1"  # only what the example needs: faster
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"]
    return subprocess.run(
        [*command, "-p", "pytest_asyncio.plugin", *args],
        cwd=folder,
        env=env,
        capture_output=True,
        text=True,
        timeout=100,
        check=False,
    )


def test_the_first_test_example_passes_as_written(tmp_path: Path) -> None:
    files = {m["name"]: m["code"] for m in BLOCK.finditer(DOC.read_text())}
    assert sorted(files) == ["conftest.py", "myapp.py", "test_chat.py"]
    for name, code in files.items():
        (tmp_path / name).write_text(code)
    result = run_pytest(tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "4 passed" in result.stdout


def test_the_services_example_passes_with_a_test_of_its_own(tmp_path: Path) -> None:
    require(redis_available(), "redis-server (apt-get install redis-server)")
    require(postgres_available(), "PostgreSQL (apt-get install postgresql)")
    text = DOC.read_text()
    files = {m["name"]: m["code"] for m in BLOCK.finditer(text)}
    (services,) = [m["code"] for m in UNNAMED.finditer(text) if "RedisServer" in m["code"]]
    (tmp_path / "myapp.py").write_text(files["myapp.py"])
    (tmp_path / "conftest.py").write_text(services)
    (tmp_path / "test_services.py").write_text(
        "import pytest\n"
        "from roomcast.testing import connect\n\n"
        "@pytest.mark.asyncio\n"
        "async def test_chat_on_redis_and_postgres(server):\n"
        "    async with connect(server.ws_url('/rt/ws')) as client:\n"
        "        await client.subscribe('chat:x')\n"
        "        await client.publish('chat:x', 1)\n"
        "        assert (await client.next_event('message'))['data'] == 1\n"
    )
    result = run_pytest(tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 passed" in result.stdout
