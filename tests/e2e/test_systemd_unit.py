"""The documented systemd unit's command line and environment serve the app.

There is no systemd on the test machines, so the test carries out the unit's
[Service] section itself, except the user switch and the sandboxing. It starts
ExecStart in WorkingDirectory with every Environment= line, with
/opt/mnist-studio mapped to this checkout, the state folder to a temporary
folder, and the port to a free one. A flag that this Streamlit rejects, a
variable the app cannot parse or a working directory without the config would
fail here.
"""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from core import data
from tests.e2e import harness

UNIT = harness.ROOT / "docs" / "systemd" / "mnist-studio.service"
INSTALL_DIR = "/opt/mnist-studio"
STATE_DIR = "/var/lib/mnist-studio"

pytestmark = pytest.mark.slow


def service_section(path: Path) -> dict[str, list[str]]:
    """Return the [Service] section's keys with every value each has, in order."""
    section, values = None, {}
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line
        elif section == "[Service]":
            key, _, value = line.partition("=")
            values.setdefault(key.strip(), []).append(value.strip())
    return values


def unit_environment(service: dict[str, list[str]]) -> dict[str, str]:
    env = {}
    for entry in service.get("Environment", []):
        for assignment in shlex.split(entry):
            name, _, value = assignment.partition("=")
            env[name] = value
    return env


def test_unit_command_and_environment_serve_the_app(page: Page, tmp_path: Path):
    service = service_section(UNIT)
    assert service["WorkingDirectory"] == [INSTALL_DIR]
    env = unit_environment(service)
    assert env["MNIST_STUDIO_DATA"].startswith(STATE_DIR), "the data cache must be in the state folder"

    # The unit's state folder contains the data cache, which `python -m core.data` fills before the
    # service starts (docs/deploy.md). Here the state folder is temporary and the cache is this
    # machine's, which the test suite's command filled.
    env = {name: value.replace(STATE_DIR, str(tmp_path)) for name, value in env.items()}
    env["MNIST_STUDIO_DATA"] = str(data.data_dir())

    port = harness.free_port()
    command = shlex.split(service["ExecStart"][0])
    assert command[0] == f"{INSTALL_DIR}/.venv/bin/streamlit", command
    command[0] = str(Path(sys.executable).with_name("streamlit"))
    assert "--server.port" in command, "nginx proxies to a fixed port, so the unit must set it"
    command[command.index("--server.port") + 1] = str(port)

    with harness.StreamlitServer(port=port, env=env, command=command, cwd=harness.ROOT) as server:
        for path, heading in (("/", "MNIST Studio"), ("/train", harness.TRAIN_HEADING)):
            harness.open_page(page, server.url, path, heading)
            expect(harness.exceptions(page)).to_have_count(0)
        # The Train page reads MNIST_STUDIO_MAX_RUNNING and MNIST_STUDIO_MAX_RUNS_PER_USER when it
        # builds the job manager, and shows how many runs each user keeps.
        expect(page.get_by_text(f"up to {env['MNIST_STUDIO_MAX_RUNS_PER_USER']} runs", exact=False)).to_be_visible()
        assert "Traceback" not in server.log(), server.log()
