"""Conformance: every scenario of scenarios.py, played by roomcast.client (in this
process) and by roomcast.js (in headless Chromium), against real servers; the same
expectations hold for both. Chromium missing fails in CI (browser.py's ``require``)."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from ...conftest import ServerProcess
from ..apps import AppFactory, app_factory
from ..browser import browser, pages
from .js_driver import JsDriver
from .python_driver import PythonDriver
from .scenarios import SCENARIOS, Driver, Scenario, Stage

__all__ = ["app_factory", "browser", "pages"]  # fixtures, used by name

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(90)]


@pytest.fixture
def stage(
    request: pytest.FixtureRequest,
    server_factory: Callable[..., ServerProcess],
    app_factory: AppFactory,
) -> Iterator[Stage]:
    servers = Stage(request, server_factory, app_factory)
    yield servers
    servers.close()


@pytest.fixture(params=["python", "js"])
def driver(request: pytest.FixtureRequest, stage: Stage) -> Iterator[Driver]:
    """The client library under test. After ``stage``, so it closes before the servers
    stop (and its clients see a close, not a crash)."""
    client: Driver
    if request.param == "python":
        client = PythonDriver()
    else:
        client = JsDriver(request.getfixturevalue("pages"))
    try:
        yield client
    finally:
        client.close()


@pytest.mark.parametrize("scenario", SCENARIOS, ids=str)
def test_scenario(scenario: Scenario, stage: Stage, driver: Driver) -> None:
    facts = scenario.play(stage, driver)
    scenario.expect(facts)
    if isinstance(driver, JsDriver):
        assert driver.page_errors == []  # no uncaught error in the page's scripts
