"""docs/operations.md, run under a real systemd in a booted Debian container.

The module boots one container (tests/support/nspawn.py: a cached Debian root, systemd-nspawn, a
private network), copies the checkout in and runs the shell blocks of "Install as a service",
"Scaling out" and "Upgrading" line by line, as an operator would paste them. Four lines cannot
be run as written and are replaced: `apt-get install` checks the packages are there (the
container has no network; the cached root has them), `git clone` copies the files of `git
ls-files`, `git pull` copies a newer release over them, and `journalctl -f` reads the journal
instead of following it. pip gets the wheels from the host (PIP_NO_INDEX, PIP_FIND_LINKS). The
tests then check what the units promise: readiness, the status line, sessions through the
unit, restart after a crash, the drain on stop, the journal, the sandbox, the security score,
two instances through a rolling restart, and one copy of the code before and after an upgrade.
"""

from __future__ import annotations

import json
import re
import secrets
import shlex
import subprocess
import time
import tomllib
from collections.abc import Iterator
from typing import Any

import pytest

from tests.support import nspawn
from tests.support.nspawn import Container

OPERATIONS = nspawn.REPO / "docs" / "operations.md"
CHECKOUT = "/opt/campus"
EMAIL = "ann@example.edu"
PASSWORD = "a long pass phrase for ann " + secrets.token_hex(4)
#: pip inside the container: the host's wheels, no index (the container has no network).
OFFLINE_PIP = {"PIP_NO_INDEX": "1", "PIP_FIND_LINKS": nspawn.WHEELS}


def doc_block(heading: str) -> list[str]:
    """The commands of the first ```sh block under *heading*, one per line."""
    text = OPERATIONS.read_text()
    start = text.find(f"\n{heading}\n")
    assert start >= 0, f"docs/operations.md has no {heading!r} heading"
    block = re.search(r"```sh\n(.*?)```", text[start:], re.DOTALL)
    assert block is not None, f"docs/operations.md has no ```sh block under {heading!r}"
    return [line for line in block.group(1).splitlines() if line.strip()]


def git_files() -> list[str]:
    listed = subprocess.run(
        ["git", "ls-files", "-z"], cwd=nspawn.REPO, capture_output=True, check=True, text=True
    ).stdout.split("\0")
    return [name for name in listed if name and (nspawn.REPO / name).exists()]


class Deployment:
    """The booted container, and what the documented lines printed there."""

    def __init__(self, box: Container) -> None:
        self.box = box
        self.printed: dict[str, str] = {}

    def run_line(self, line: str, cwd: str) -> str:
        """One documented line, as literally as a script can; returns the directory it leaves."""
        box = self.box
        if line.startswith("apt-get install"):
            packages = [word for word in line.split("#")[0].split()[2:] if word[0] != "-"]
            box.sh(f"dpkg-query --show {' '.join(packages)}")  # the cached root has them
            return cwd
        if line.startswith("git clone"):
            target = line.split("&&")[0].split()[-1]
            box.copy_in(nspawn.REPO, git_files(), target)
            return target if "&& cd" in line else cwd
        if "journalctl" in line:
            # -f follows; journald reads the unit's output on its own time, so read again
            # for a while until campus's first line is there.
            line = line.replace(" -f", " --no-pager")
            deadline = time.monotonic() + 10
            while True:
                printed = box.sh(f"cd {cwd} && {line}").stdout
                if "listening on" in printed or time.monotonic() > deadline:
                    self.printed[line] = printed
                    return cwd
                time.sleep(0.25)
        if " users add " in line and "--password-stdin" not in line:
            prompts = [("Password:", PASSWORD), ("Repeat password:", PASSWORD)]
            code, output = box.with_terminal(f"cd {cwd} && {line}", prompts, env=OFFLINE_PIP)
            assert code == 0, f"{line}\nexit {code}\n{output}"
            self.printed[line] = output
            return cwd
        self.printed[line] = box.sh(f"cd {cwd} && {line}", env=OFFLINE_PIP, timeout=300).stdout
        return cwd

    def printed_by(self, fragment: str) -> str:
        return next(out for line, out in self.printed.items() if fragment in line)

    def login(self, port: int = 8000) -> str:
        body = {"email": EMAIL, "password": PASSWORD}
        answer = self.box.client("request", port=port, method="POST", path="/login", body=body)
        assert answer["status"] == 200, answer
        assert answer["body"]["user"]["email"] == EMAIL
        cookie: str = answer["cookie"]
        assert cookie
        return cookie

    def me(self, cookie: str, port: int = 8000) -> dict[str, Any]:
        return self.box.client("request", port=port, method="GET", path="/api/me", cookie=cookie)

    def start(self, unit: str = "campus") -> None:
        """`systemctl start`, after forgetting earlier starts: the tests start the unit more
        often than StartLimitBurst allows a broken one within a minute."""
        self.box.sh(f"systemctl reset-failed {unit}; systemctl start {unit}")

    def journal(self, unit: str = "campus") -> str:
        return self.box.sh(f"journalctl --unit={unit} --output=cat --no-pager").stdout


@pytest.fixture(scope="module")
def deployed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    missing = nspawn.missing_tools()
    if missing:
        pytest.skip(missing)
    started = time.monotonic()
    root = nspawn.debian_root()
    build = tomllib.loads((nspawn.REPO / "pyproject.toml").read_text())["build-system"]
    wheels = nspawn.wheels(root, nspawn.REPO / "requirements.txt", build["requires"])
    log = tmp_path_factory.mktemp("nspawn") / "console.log"
    prepared = time.monotonic()
    with Container(root, log, binds={wheels: nspawn.WHEELS}) as box:
        booted = time.monotonic()
        deployment = Deployment(box)
        cwd = "/"
        for line in doc_block("## Install as a service"):
            cwd = deployment.run_line(line, cwd)
        print(
            f"root and wheels {prepared - started:.0f} s, boot {booted - prepared:.0f} s,"
            f" the documented steps {time.monotonic() - booted:.0f} s"
        )
        yield deployment


def test_the_docs_install_an_enabled_running_unit(deployed: Deployment) -> None:
    box = deployed.box
    assert box.sh("systemctl is-enabled campus").stdout.strip() == "enabled"
    state = box.show("campus", "ActiveState", "SubState", "User", "WorkingDirectory")
    assert state == {
        "ActiveState": "active",
        "SubState": "running",
        "User": "campus",
        "WorkingDirectory": CHECKOUT,
    }
    # The environment file got its secret from the documented line, and is root's alone.
    env_file = box.sh("stat -c '%U:%G %a' /etc/campus/campus.env && cat /etc/campus/campus.env")
    owner, _, text = env_file.stdout.partition("\n")
    assert owner == "root:root 600"
    secret = re.search(r"^CAMPUS_SESSION_SECRET=(\S+)$", text, re.MULTILINE)
    assert secret is not None and len(secret.group(1)) >= 32, text
    assert "added ann@example.edu" in deployed.printed_by(" users add ")
    assert "listening on" in deployed.printed_by("journalctl")


def test_status_shows_the_status_line(deployed: Deployment) -> None:
    printed = deployed.printed_by("systemctl status campus")
    readme_line = next(
        line for line in doc_block("## Install as a service") if "systemctl status" in line
    )
    promised = readme_line.split("#", 1)[1].strip()
    assert promised in printed, printed
    assert promised in deployed.box.sh("systemctl status campus").stdout


def test_start_returns_once_campus_answers(deployed: Deployment) -> None:
    box = deployed.box
    box.sh("systemctl stop campus")
    took = box.sh(
        "systemctl reset-failed campus; s=$(date +%s%N); systemctl start campus; e=$(date +%s%N);"
        " curl --silent --show-error --max-time 2 http://127.0.0.1:8000/healthz; echo;"
        " echo $(( (e - s) / 1000000 ))"
    ).stdout.splitlines()
    # Not a moment after `systemctl start` returned: the first request already gets an answer.
    assert took[0] == '{"status": "ok", "store": "redis"}'
    # ... because it waited for READY=1: a Python process needs a while to import and listen.
    assert int(took[1]) > 100, f"systemctl start took only {took[1]} ms"
    print(f"systemctl start: {took[1]} ms")


def test_a_login_and_api_me_work_through_the_unit(deployed: Deployment) -> None:
    box = deployed.box
    body = {"email": EMAIL, "password": PASSWORD}
    login = box.client("request", port=8000, method="POST", path="/login", body=body)
    assert login["status"] == 200, login
    # The unit runs production's settings: the Redis store, and a Secure, HttpOnly cookie.
    (set_cookie,) = [c for c in login["set_cookie"] if c.startswith("campus.sid=")]
    assert {"Secure", "HttpOnly"} <= {part.strip() for part in set_cookie.split(";")}
    answer = deployed.me(login["cookie"])
    assert answer["status"] == 200
    assert answer["body"]["user"] == {"email": EMAIL, "name": "Ann", "roles": []}
    assert "password" not in str(answer["body"])


def test_kill_9_is_followed_by_a_restart_and_the_session_survives(deployed: Deployment) -> None:
    box = deployed.box
    cookie = deployed.login()
    before = box.show("campus", "MainPID", "NRestarts")
    box.sh(f"kill -9 {before['MainPID']}")
    deadline = time.monotonic() + 20
    while True:
        after = box.show("campus", "MainPID", "NRestarts", "ActiveState")
        if after["ActiveState"] == "active" and after["MainPID"] not in ("0", before["MainPID"]):
            break
        assert time.monotonic() < deadline, f"no restart after kill -9: {after}"
        time.sleep(0.2)
    assert int(after["NRestarts"]) == int(before["NRestarts"]) + 1
    assert "status=9/KILL" in deployed.journal()
    answer = deployed.me(cookie)  # a new process, the same session: it lives in Redis
    assert answer["status"] == 200, answer
    assert answer["body"]["user"]["email"] == EMAIL


def test_stop_lets_a_slow_request_finish_and_exits_zero(deployed: Deployment) -> None:
    box = deployed.box
    timeout_stop = int(box.show("campus", "TimeoutStopUSec")["TimeoutStopUSec"].rstrip("s"))
    client = subprocess.Popen(
        box.client_argv("slow_login", port=8000, email=EMAIL, password=PASSWORD),
        cwd=nspawn.REPO,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert client.stdin is not None and client.stdout is not None
    stop: subprocess.Popen[str] | None = None
    try:
        assert "headers" in client.stdout.readline()  # the login is in flight, half its body sent
        time.sleep(0.3)
        started = time.monotonic()
        stop = box.spawn("systemctl stop campus")
        deadline = time.monotonic() + 10
        while box.show("campus", "ActiveState")["ActiveState"] != "deactivating":
            assert time.monotonic() < deadline, "systemctl stop did not start stopping"
            time.sleep(0.05)
        time.sleep(1.5)
        assert stop.poll() is None, "the unit stopped with a request still in flight"
        client.stdin.write("go\n")  # the rest of the body
        client.stdin.flush()
        answer = client.stdout.readline()
        assert '"status": 200' in answer, answer  # the login finished, after SIGTERM
        assert stop.wait(timeout_stop + 5) == 0
        took = time.monotonic() - started
    finally:
        client.kill()
        client.wait()
        if stop is not None and stop.poll() is None:
            stop.kill()
    assert took < timeout_stop, f"systemctl stop took {took:.1f}s"
    print(f"systemctl stop with a slow login in flight: {took:.1f} s")
    state = box.show("campus", "ActiveState", "Result", "ExecMainCode", "ExecMainStatus")
    # Exited by itself (code 1: CLD_EXITED) with status 0; not killed after the grace time.
    assert state == {
        "ActiveState": "inactive",
        "Result": "success",
        "ExecMainCode": "1",
        "ExecMainStatus": "0",
    }
    journal = deployed.journal()
    assert "shutting down: no new connections, 1 request(s) in flight" in journal
    deployed.start()


def test_the_journal_keeps_every_access_line_of_a_burst(deployed: Deployment) -> None:
    box = deployed.box
    path = f"/burst-{secrets.token_hex(4)}.txt"  # 404: a request that costs campus little
    done = box.client("burst", port=8000, path=path, seconds=3.0, clients=4)
    assert done["statuses"] == {"404": done["count"]}
    limits = box.show("campus", "LogRateLimitIntervalUSec", "LogRateLimitBurst")
    deadline = time.monotonic() + 15
    while True:  # journald may still be writing the tail of the burst
        logged = box.sh(f"journalctl --unit=campus --output=cat --no-pager | grep -cF '{path}'")
        if int(logged.stdout) >= done["count"] or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    suppressed = box.sh("journalctl --no-pager --grep=Suppressed", check=False).stdout
    assert int(logged.stdout) == done["count"], (
        f"{done['count']} requests in 3 s, {logged.stdout.strip()} access lines; limits {limits}"
        f"\n{suppressed}"
    )
    assert "campus" not in suppressed
    print(f"burst: {done['count']} requests in 3 s, all in the journal; unit's limits {limits}")


#: Run in the service's mount namespace: what each attempt gets (an errno name, or "allowed").
SANDBOX_PROBE = """
import errno, json, os
def attempt(action):
    try:
        action()
    except OSError as exc:
        return errno.errorcode[exc.errno]
    return "allowed"
print(json.dumps({
    "write checkout": attempt(lambda: open("/opt/campus/README.md", "a").close()),
    "create in checkout": attempt(lambda: open("/opt/campus/new", "x").close()),
    "create in venv": attempt(lambda: open("/opt/campus/venv/bin/new", "x").close()),
    "write env file": attempt(lambda: open("/etc/campus/campus.env", "a").close()),
    "read env file": attempt(lambda: open("/etc/campus/campus.env").read()),
    "read home": attempt(lambda: open("/home/alice/notes.txt").read()),
    "list home": attempt(lambda: os.listdir("/home/alice")),
    "list root": attempt(lambda: os.listdir("/root")),
}))
"""


def test_the_sandbox_holds(deployed: Deployment) -> None:
    box = deployed.box
    # Another user's home, readable by everyone: outside the sandbox the campus user reads it.
    box.sh(
        "id alice >/dev/null 2>&1 || useradd --create-home alice; chmod 755 /home/alice;"
        " echo private > /home/alice/notes.txt; chmod 644 /home/alice/notes.txt"
    )
    assert box.sh("runuser -u campus -- cat /home/alice/notes.txt").stdout == "private\n"

    main = box.show("campus", "MainPID")["MainPID"]
    enter = f"nsenter --target={main} --mount"  # the running service's own view of the files
    probe = f"python3 -c {shlex.quote(SANDBOX_PROBE)}"
    as_campus = json.loads(
        box.sh(f"{enter} --setuid=$(id -u campus) --setgid=$(id -g campus) -- {probe}").stdout
    )
    assert "allowed" not in as_campus.values(), as_campus
    # Even root, in that view, cannot write the checkout or /etc, and sees no home directories:
    # the read-only mounts and the hidden /home hold whatever the files' permissions are.
    as_root = json.loads(box.sh(f"{enter} -- {probe}").stdout)
    for attempt in ("write checkout", "create in checkout", "create in venv", "write env file"):
        assert as_root[attempt] == "EROFS", as_root
    assert as_root["read home"] in ("ENOENT", "EACCES"), as_root
    assert box.sh(f"{enter} -- ls -A /home /root").stdout.split() == ["/home:", "/root:"]


def security_score(box: Container, unit: str) -> str:
    out = box.sh(f"systemd-analyze security {unit}").stdout
    score = re.search(r"Overall exposure level for \S+: (\d+\.\d) (\w+)", out)
    assert score is not None, out
    return f"{score.group(1)} {score.group(2)}"


def test_systemd_analyze_security_scores_as_the_docs_say(deployed: Deployment) -> None:
    claim = re.search(
        r"`systemd-analyze\s+security\s+campus` rates it \*\*(\d+\.\d \w+)\*\*",
        OPERATIONS.read_text(),
    )
    assert claim is not None, "docs/operations.md states the security score"
    assert security_score(deployed.box, "campus") == claim.group(1)


def test_two_instances_share_sessions_and_lose_nothing_in_a_rolling_restart(
    deployed: Deployment,
) -> None:
    box = deployed.box
    commands = doc_block("## Scaling out")
    rolling = next(line for line in commands if "restart" in line)
    for line in commands:
        if line != rolling:
            deployed.run_line(line, CHECKOUT)
    for port in (8001, 8002):
        assert box.show(f"campus@{port}", "ActiveState")["ActiveState"] == "active"
    assert security_score(box, "campus@8001") == security_score(box, "campus")

    cookie = deployed.login(8001)  # made on one, valid on the other
    answer = deployed.me(cookie, 8002)
    assert answer["status"] == 200 and answer["body"]["user"]["email"] == EMAIL

    pids = {port: box.show(f"campus@{port}", "MainPID")["MainPID"] for port in (8001, 8002)}
    client = subprocess.Popen(
        box.client_argv("load", ports=[8001, 8002], path="/api/me", cookie=cookie, clients=4),
        cwd=nspawn.REPO,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert client.stdin is not None and client.stdout is not None
    try:
        assert "started" in client.stdout.readline()
        time.sleep(0.5)
        box.sh(rolling)
        time.sleep(0.5)
        client.stdin.write("stop\n")
        client.stdin.flush()
        counts: dict[str, int] = json.loads(client.stdout.readline())
    finally:
        client.kill()
        client.wait()
    for port in (8001, 8002):
        assert box.show(f"campus@{port}", "MainPID")["MainPID"] != pids[port], "not restarted"
    assert counts.get("lost", 0) == 0, counts
    answered = {key: value for key, value in counts.items() if key[0].isdigit()}
    assert set(answered) == {"8001 200", "8002 200"}, counts  # every answer: the session
    assert sum(answered.values()) > 100, counts
    print(f"rolling restart under load: {counts}")


def imported_from(box: Container, module: str) -> str:
    """Where the virtualenv's Python finds *module*, asked from outside the checkout."""
    code = f"import {module}; print({module}.__file__)"
    return box.sh(f"cd / && {CHECKOUT}/venv/bin/python -c {shlex.quote(code)}").stdout.strip()


def test_one_copy_of_the_code_before_and_after_an_upgrade(
    deployed: Deployment, tmp_path: Any
) -> None:
    """The service and the `campus` command run the checkout's code, and the documented
    upgrade moves both to the new release, keeping the sessions."""
    box = deployed.box
    in_venv = box.sh(f"find {CHECKOUT}/venv -name cli.py -path '*/campus/*'").stdout
    assert in_venv == "", f"a copy of campus in the virtualenv: {in_venv}"
    assert imported_from(box, "campus.cli") == f"{CHECKOUT}/campus/cli.py"
    pid = box.show("campus", "MainPID")["MainPID"]
    assert box.sh(f"readlink /proc/{pid}/cwd").stdout.strip() == CHECKOUT
    assert "-m campus" in box.sh(f"tr '\\0' ' ' < /proc/{pid}/cmdline").stdout
    cookie = deployed.login()

    # The next release: this checkout with another version and a line of new code.
    release, files = tmp_path / "release", git_files()
    for name in files:
        (release / name).parent.mkdir(parents=True, exist_ok=True)
        (release / name).write_bytes((nspawn.REPO / name).read_bytes())
    pyproject = release / "pyproject.toml"
    version = tomllib.loads(pyproject.read_text())["project"]["version"]
    upgraded, mark = f"{version}.post7", secrets.token_hex(4)
    pyproject.write_text(pyproject.read_text().replace(f'"{version}"', f'"{upgraded}"', 1))
    with (release / "campus" / "__init__.py").open("a") as init:
        init.write(f'UPGRADE_MARK = "{mark}"\n')

    cwd = "/"
    for line in doc_block("## Upgrading"):
        if "git pull" in line:  # what a pull does: the new release's files in place
            box.copy_in(release, files, "/tmp/release")
            box.sh(f"cp -a /tmp/release/. {CHECKOUT}/ && rm -r /tmp/release")
            cwd = CHECKOUT
        else:
            cwd = deployed.run_line(line, cwd)
    assert deployed.printed_by("--version").strip() == f"campus {upgraded}"
    code = "import campus; print(campus.UPGRADE_MARK)"
    assert (
        box.sh(f"cd / && {CHECKOUT}/venv/bin/python -c {shlex.quote(code)}").stdout.strip() == mark
    )
    after = box.show("campus", "MainPID", "ActiveState")
    assert after["ActiveState"] == "active" and after["MainPID"] != pid  # restarted
    answer = deployed.me(cookie)  # the session made before the upgrade
    assert answer["status"] == 200 and answer["body"]["user"]["email"] == EMAIL
    assert box.sh(f"find {CHECKOUT}/venv -name cli.py -path '*/campus/*'").stdout == ""
