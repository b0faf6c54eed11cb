"""The browser suite's key flows again, through nginx with the documented site config.

tests/e2e/nginx_proxy.py runs nginx on 127.0.0.1 with docs/nginx/mnist-studio.conf
(its ports, host name and certificate replaced) in front of the suite's server,
and every test here reaches the app only at https://127.0.0.1:<port>/. The page,
training and prediction tests are imported from the other test modules, so they
run a second time with this module's `server` and `page` fixtures in place of
conftest.py's. Streamlit sends every page's content over its WebSocket
(/_stcore/stream), so each page that renders, and the live chart that grows
while a run trains, shows that nginx upgrades and relays it.

Needs Debian's nginx and openssl packages.
"""

from __future__ import annotations

import http.client
import re
import time
import tomllib
import urllib.request
from dataclasses import dataclass

import pytest
from playwright.sync_api import Browser, Page

from tests.e2e import harness
from tests.e2e.nginx_proxy import SITE_CONFIG, NginxProxy
# Collected again in this module, so they run through nginx with the fixtures below.
from tests.e2e.test_browser_pages import test_page_renders  # noqa: F401
from tests.e2e.test_browser_predict import test_drawn_digits_are_predicted  # noqa: F401
from tests.e2e.test_browser_train import test_live_curve_grows_then_run_is_done  # noqa: F401

pytestmark = pytest.mark.slow

# nginx writes a request's access-log line when the request ends, which for a WebSocket is when it closes.
ACCESS_LOG_TIMEOUT_S = 10


@dataclass
class ProxiedServer:
    """The suite's server as the browser reaches it through nginx. The imported tests read `url`."""
    url: str
    app: harness.StreamlitServer
    proxy: NginxProxy

    def log(self) -> str:
        return self.app.log()


@pytest.fixture(scope="session")
def server(server: harness.StreamlitServer) -> ProxiedServer:
    """nginx in front of conftest.py's server, for this module's tests.

    Session scope, like the fixture it replaces, so that conftest.py's session
    fixtures (trained_run) can use it when this module is the first to need them."""
    with NginxProxy(server.port) as proxy:
        yield ProxiedServer(proxy.url, server, proxy)


@pytest.fixture
def page(browser: Browser) -> Page:
    """A new page in a new browser context that accepts the proxy's self-signed certificate."""
    context = browser.new_context(ignore_https_errors=True, viewport={"width": 1400, "height": 1000})
    context.set_default_timeout(harness.SCRIPT_RUN_TIMEOUT_S * 1000)
    try:
        yield context.new_page()
    finally:
        context.close()


def test_health_through_nginx(server: ProxiedServer):
    with urllib.request.urlopen(f"{server.url}/_stcore/health", context=server.proxy.ssl_context()) as response:
        assert response.read().decode().strip() == "ok"


def test_http_redirects_to_https(server: ProxiedServer):
    connection = http.client.HTTPConnection(harness.HOST, server.proxy.http_port, timeout=10)
    try:
        connection.request("GET", "/train?user=0123456789abcdef")
        response = connection.getresponse()
    finally:
        connection.close()

    assert response.status == 301
    # The documented config redirects to port 443, so the test's own HTTPS port is not in it.
    assert response.getheader("Location") == f"https://{harness.HOST}/train?user=0123456789abcdef"


def test_websocket_upgraded_by_nginx(page: Page, server: ProxiedServer):
    harness.open_page(page, server.url, "/", "MNIST Studio")
    page.close()

    deadline = time.monotonic() + ACCESS_LOG_TIMEOUT_S
    upgraded = re.compile(r'"GET /_stcore/stream HTTP/1\.1" 101 ')
    while not upgraded.search(server.proxy.access_log()):
        assert time.monotonic() < deadline, (
            f"nginx's access log has no '101 Switching Protocols' for /_stcore/stream:\n"
            f"{server.proxy.access_log()[-3000:]}")
        time.sleep(0.2)


def test_upload_limit_fits_streamlit_limit():
    """nginx must accept every checkpoint that Streamlit's file uploader accepts."""
    streamlit_mb = tomllib.loads((harness.ROOT / ".streamlit" / "config.toml").read_text())["server"]["maxUploadSize"]
    nginx_limit = re.search(r"client_max_body_size (\d+)m;", SITE_CONFIG.read_text())

    assert nginx_limit is not None, f"{SITE_CONFIG} sets no client_max_body_size in MB"
    assert int(nginx_limit.group(1)) > streamlit_mb
