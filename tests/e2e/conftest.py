"""Fixtures for the browser suite: one app server per session, one chromium per test module,
a fresh browser context per test, and one trained run per module for the Predict and reload tests.

chromium is started per module, not per session. Playwright's sync API keeps an asyncio event loop
running in the main thread while it is started, and asyncio.run then raises RuntimeError. So a
module that calls asyncio.run itself (test_load.py, through bench/load.py) needs every other
module's browser closed."""

from __future__ import annotations

import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from tests.e2e import harness

# A run of the tutorial's 784-32-10 network on all 48,000 training images. Three epochs
# reach about 95% validation accuracy, enough to read clearly drawn digits.
SHARED_RUN_EPOCHS = "3"
SHARED_RUN_TIMEOUT_S = 240
SERVER_LOG_TAIL_CHARS = 6000
SERVER_KEY = pytest.StashKey[harness.StreamlitServer]()

# Playwright's expect() waits 5 s by default; a script run on a busy 2-core machine can take longer.
expect.set_options(timeout=harness.SCRIPT_RUN_TIMEOUT_S * 1000)


@pytest.fixture(scope="session")
def server(request) -> harness.StreamlitServer:
    """The app, served on a free port of 127.0.0.1 for the whole session."""
    app_server = harness.StreamlitServer()
    app_server.start()
    request.config.stash[SERVER_KEY] = app_server
    try:
        yield app_server
    finally:
        app_server.stop()


@pytest.fixture(scope="module")
def browser() -> Browser:
    with sync_playwright() as playwright:
        chromium = harness.launch_browser(playwright)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def page(browser: Browser) -> Page:
    """A new page in a new browser context, so each test is a new Streamlit session and user."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    context.set_default_timeout(harness.SCRIPT_RUN_TIMEOUT_S * 1000)
    try:
        yield context.new_page()
    finally:
        context.close()


@pytest.fixture(scope="module")
def trained_run(browser: Browser, server: harness.StreamlitServer) -> tuple[str, str]:
    """Train one run from the browser and return (owner id, run name) once it is done."""
    # test_nginx.py's `server` is an HTTPS proxy with a self-signed certificate.
    context = browser.new_context(viewport={"width": 1400, "height": 1000}, ignore_https_errors=True)
    context.set_default_timeout(harness.SCRIPT_RUN_TIMEOUT_S * 1000)
    try:
        page = context.new_page()
        harness.open_page(page, server.url, "/train", harness.TRAIN_HEADING)
        harness.set_slider(page, "Epochs", SHARED_RUN_EPOCHS)
        run_name = harness.start_training(page)
        harness.wait_for_run_state(page, run_name, ("done",), SHARED_RUN_TIMEOUT_S)
        return harness.owner_of(page), run_name
    finally:
        context.close()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    """Attach the end of the server's log to the report of a failed test."""
    report = yield
    app_server = item.config.stash.get(SERVER_KEY, None)
    if report.failed and app_server is not None:
        report.sections.append(("Streamlit server log (end)", app_server.log()[-SERVER_LOG_TAIL_CHARS:]))
    return report
