"""systemd: the test plays the supervisor's part with its own notification socket."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from campus.runtime.sdnotify import notify
from tests.support.servers import REPO, campus_env, free_port
from tests.support.units import service_section


class Supervisor:
    """A datagram socket where a service's notifications arrive, as systemd's would."""

    def __init__(self, address: str) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(address)
        self.sock.settimeout(20)

    def receive(self) -> list[str]:
        return self.sock.recv(4096).decode().split("\n")

    def nothing_more(self) -> bool:
        self.sock.settimeout(0.2)
        try:
            self.sock.recv(4096)
        except TimeoutError:
            return True
        return False


@pytest.fixture
def supervisor(tmp_path: Path) -> Iterator[tuple[Supervisor, str]]:
    path = str(tmp_path / "notify.sock")
    supervisor = Supervisor(path)
    yield supervisor, path
    supervisor.sock.close()


def start(notify_socket: str, port: int, users_file: Path) -> subprocess.Popen[bytes]:
    env = campus_env(NOTIFY_SOCKET=notify_socket, CAMPUS_USERS_FILE=str(users_file))
    return subprocess.Popen(
        [sys.executable, "-m", "campus", "--port", str(port)],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


@pytest.mark.slow
def test_ready_once_listening_then_stopping_on_sigterm(
    supervisor: tuple[Supervisor, str], users_file: Path
) -> None:
    listener, path = supervisor
    port = free_port()
    process = start(path, port, users_file)
    try:
        ready = listener.receive()
        # The very moment READY=1 arrives, the port must already take requests.
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as response:
            assert response.status == 200
        assert ready[0] == "READY=1"
        assert f"STATUS=listening on 127.0.0.1:{port}" in ready
        assert listener.nothing_more()

        process.send_signal(signal.SIGTERM)
        listener.sock.settimeout(20)
        stopping = listener.receive()
        assert stopping[0] == "STOPPING=1"
        assert process.wait(20) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)


@pytest.mark.slow
def test_no_ready_when_the_port_is_taken(
    supervisor: tuple[Supervisor, str], users_file: Path
) -> None:
    listener, path = supervisor
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        process = start(path, taken.getsockname()[1], users_file)
        assert process.wait(20) == 1
    assert listener.nothing_more()


def test_abstract_socket_names() -> None:
    name = f"campus-test-{os.getpid()}-{time.monotonic_ns()}"
    listener = Supervisor("\0" + name)
    try:
        assert notify("READY=1", "STATUS=hello", environ={"NOTIFY_SOCKET": "@" + name})
        assert listener.receive() == ["READY=1", "STATUS=hello"]
    finally:
        listener.sock.close()


@pytest.mark.parametrize("value", ["", "vsock:2:1234", "relative/path"])
def test_notify_without_a_usable_socket_is_a_no_op(value: str) -> None:
    assert not notify("READY=1", environ={"NOTIFY_SOCKET": value} if value else {})


def test_a_vanished_supervisor_is_logged_not_raised(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    gone = str(tmp_path / "gone.sock")
    assert not notify("READY=1", environ={"NOTIFY_SOCKET": gone})
    assert "cannot notify systemd" in caplog.text


# -- the unit files ---------------------------------------------------------------------

UNITS = ["campus.service", "campus@.service"]
#: What every unit must say: readiness, restarts, secrets from a file, its own user, a sandbox.
REQUIRED = {
    "Type": "notify",
    "Restart": "on-failure",
    "User": "campus",
    "NoNewPrivileges": "yes",
    "ProtectSystem": "strict",
    "ProtectHome": "yes",
    "PrivateTmp": "yes",
    "PrivateDevices": "yes",
}


@pytest.mark.parametrize("name", UNITS)
def test_unit_runs_as_a_notify_service_with_a_sandbox(name: str) -> None:
    service = service_section(name)
    for key, value in REQUIRED.items():
        assert service.get(key) == value, key
    assert service["EnvironmentFile"].startswith("/etc/campus/")
    # Long enough for the server's own drain (10 s) before systemd resorts to SIGKILL.
    assert int(service["TimeoutStopSec"]) > 10


def test_the_template_differs_only_in_its_port() -> None:
    single, template = service_section(UNITS[0]), service_section(UNITS[1])
    assert template.pop("ExecStart") == single.pop("ExecStart") + " --port %i"
    assert template == single


@pytest.mark.parametrize("name", UNITS)
@pytest.mark.parametrize(
    "environment_file",
    [{"CAMPUS_ENV": "development"}, {"CAMPUSENV": "production"}, {}],
    ids=["says-development", "typo", "silent"],
)
def test_the_units_pin_production_where_the_environment_file_cannot_undo_it(
    name: str, environment_file: dict[str, str], tmp_path: Path
) -> None:
    """The unit's command line says --env production: whatever the environment file says,
    campus starts as production or not at all (here: not, as no secret is set)."""
    argv = service_section(name)["ExecStart"].replace(" --port %i", "").split()
    assert argv[:4] == ["/opt/campus/venv/bin/python", "-m", "campus", "serve"]
    assert argv[4:] == ["--env", "production"]
    done = subprocess.run(
        [sys.executable, *argv[1:]],
        cwd=tmp_path,
        env={**campus_env(PYTHONPATH=str(REPO)), **environment_file},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith("campus: production needs CAMPUS_SESSION_SECRET")


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze")
@pytest.mark.parametrize("name", UNITS)
def test_systemd_analyze_verify(name: str, tmp_path: Path) -> None:
    """The unit as shipped, but pointing at this checkout (verify checks ExecStart exists)."""
    text = (REPO / "config" / name).read_text()
    text = text.replace("/opt/campus/venv/bin/python", sys.executable)
    text = text.replace("/opt/campus", str(REPO))
    unit = tmp_path / name
    unit.write_text(text)
    target = unit if "@" not in name else tmp_path / name.replace("@", "@8001")
    if target != unit:
        target.symlink_to(unit)
    result = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", str(target)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    # verify exits 0 even for unknown keys or bad values; it only warns: any output fails.
    assert result.returncode == 0 and not result.stderr.strip(), result.stderr
