"""Run nginx on 127.0.0.1 with the documented site config (docs/nginx/mnist-studio.conf).

The site file is the one an admin installs by following docs/deploy.md. This module
copies it into a temporary folder and replaces only its deployment-specific
values: the upstream port, the two listen ports, the host name and the
certificate paths. A self-signed certificate for 127.0.0.1 is made with
openssl. nginx runs in the foreground (`daemon off`) with its pid file, logs
and temporary files in that folder, so it needs no root and touches nothing
under /etc or /var. Debian packages: nginx and openssl.
"""

from __future__ import annotations

import shutil
import ssl
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

from tests.e2e.harness import HOST, ROOT, free_port, stop_process

SITE_CONFIG = ROOT / "docs" / "nginx" / "mnist-studio.conf"
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
OPENSSL = shutil.which("openssl") or "/usr/bin/openssl"
START_TIMEOUT_S = 20

# The top-level nginx.conf around the site file: what /etc/nginx/nginx.conf
# provides on a real host, with every path inside the temporary folder.
MAIN_CONFIG = """\
worker_processes 1;
pid {tmp}/nginx.pid;
error_log {tmp}/error.log info;
events {{
    worker_connections 256;
}}
http {{
    access_log {tmp}/access.log;
    client_body_temp_path {tmp}/client_body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    include {tmp}/mnist-studio.conf;
}}
"""


def replace_required(text: str, old: str, new: str) -> str:
    """Replace `old`, which must occur in the site config, by `new` everywhere."""
    if old not in text:
        raise AssertionError(f"{SITE_CONFIG} no longer contains {old!r}: update tests/e2e/nginx_proxy.py "
                             "to match the documented config")
    return text.replace(old, new)


def site_config_for_test(upstream_port: int, https_port: int, http_port: int, cert: Path, key: Path) -> str:
    """Return the documented site config with this test's ports, host name and certificate."""
    text = SITE_CONFIG.read_text()
    text = replace_required(text, "server 127.0.0.1:8501;", f"server {HOST}:{upstream_port};")
    text = replace_required(text, "listen 443 ssl;", f"listen {HOST}:{https_port} ssl;")
    text = replace_required(text, "listen 80;", f"listen {HOST}:{http_port};")
    text = replace_required(text, "/etc/letsencrypt/live/studio.example.org/fullchain.pem", str(cert))
    text = replace_required(text, "/etc/letsencrypt/live/studio.example.org/privkey.pem", str(key))
    return replace_required(text, "server_name studio.example.org;", f"server_name {HOST};")


class NginxProxy:
    """nginx serving https://127.0.0.1:<https_port>/ in front of a Streamlit server on `upstream_port`.

    Use as a context manager, or call start() and stop()."""

    def __init__(self, upstream_port: int):
        for tool in (NGINX, OPENSSL):
            if not Path(tool).exists():
                raise FileNotFoundError(f"{tool} was not found: install Debian's nginx and openssl packages "
                                        "(apt-get install -y nginx openssl)")
        self.upstream_port = upstream_port
        self.https_port = free_port()
        self.http_port = free_port()
        self.url = f"https://{HOST}:{self.https_port}"
        self.tmp = Path(tempfile.mkdtemp(prefix="mnist-studio-nginx-"))
        # nginx's worker processes run as another user when the test runs as root.
        self.tmp.chmod(0o755)
        self.process: subprocess.Popen | None = None

    def start(self) -> "NginxProxy":
        cert, key = self._make_certificate()
        (self.tmp / "mnist-studio.conf").write_text(
            site_config_for_test(self.upstream_port, self.https_port, self.http_port, cert, key))
        main_config = self.tmp / "nginx.conf"
        main_config.write_text(MAIN_CONFIG.format(tmp=self.tmp))
        command = [NGINX, "-p", str(self.tmp), "-e", str(self.tmp / "error.log"), "-c", str(main_config)]
        checked = subprocess.run([*command, "-t"], capture_output=True, text=True)
        if checked.returncode != 0:
            raise RuntimeError(f"nginx -t rejected the config made from {SITE_CONFIG}:\n{checked.stderr}")
        self.process = subprocess.Popen([*command, "-g", "daemon off;"], stdout=subprocess.DEVNULL,
                                        stderr=subprocess.STDOUT)
        try:
            self._wait_healthy()
        except BaseException:
            self.stop()
            raise
        return self

    def _make_certificate(self) -> tuple[Path, Path]:
        cert, key = self.tmp / "cert.pem", self.tmp / "key.pem"
        subprocess.run([OPENSSL, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                        "-subj", f"/CN={HOST}", "-addext", f"subjectAltName=IP:{HOST}",
                        "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
        key.chmod(0o600)
        return cert, key

    def _wait_healthy(self) -> None:
        """Wait until /_stcore/health returns "ok" through nginx."""
        context = ssl.create_default_context(cafile=str(self.tmp / "cert.pem"))
        health = f"{self.url}/_stcore/health"
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"nginx exited with code {self.process.returncode}. Its log:\n{self.log()}")
            try:
                with urllib.request.urlopen(health, timeout=2, context=context) as response:
                    if response.read().decode().strip() == "ok":
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            time.sleep(0.2)
        raise TimeoutError(f"{health} did not answer 'ok' within {START_TIMEOUT_S} s. nginx's log:\n{self.log()}")

    def ssl_context(self) -> ssl.SSLContext:
        """Return a TLS context that trusts this proxy's self-signed certificate."""
        return ssl.create_default_context(cafile=str(self.tmp / "cert.pem"))

    def log(self) -> str:
        path = self.tmp / "error.log"
        return path.read_text(errors="replace") if path.exists() else "(no error log)"

    def access_log(self) -> str:
        path = self.tmp / "access.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop(self) -> None:
        stop_process(self.process)
        shutil.rmtree(self.tmp, ignore_errors=True)

    def __enter__(self) -> "NginxProxy":
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()
