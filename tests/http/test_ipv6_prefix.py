"""IPv6 clients counted per /64, for real: a campus process and clients on many addresses of
one /64, in a network namespace of the test's own (tests/support/netns_ipv6.py).

With ``ipv6_prefix = 64`` the 6 addresses are one client to the login throttle and to the
per-client connection cap; with 128 (each address on its own, as before) they are 6 and 300
clients, which is what the first run must not show.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest

from tests.support.servers import REPO

UNSHARE = ["unshare", "--net", "--map-root-user", "--"]


def in_namespace(prefix: int) -> dict[str, object]:
    command = [*UNSHARE, sys.executable, "-m", "tests.support.netns_ipv6", str(prefix)]
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    found: dict[str, object] = json.loads(result.stdout.strip().splitlines()[-1])
    return found


@pytest.fixture(scope="module", autouse=True)
def namespaces() -> None:
    """Skip, saying why, only where this process cannot make a network namespace."""
    if shutil.which("unshare") is None or shutil.which("ip") is None:
        pytest.skip("needs unshare (util-linux) and ip (iproute2)")
    probe = subprocess.run([*UNSHARE, "ip", "link", "set", "lo", "up"], capture_output=True)
    if probe.returncode != 0:
        pytest.skip(f"no network namespace here: {probe.stderr.decode().strip()}")


def test_addresses_of_one_64_are_one_client() -> None:
    found = in_namespace(64)
    assert found["logins"] == {"403": 5, "429": 25}  # max_failures 403s, then 429
    assert found["connections"] == {"opened": 300, "refused": 44, "accepted": 256}


def test_with_128_each_address_is_a_client_of_its_own() -> None:
    found = in_namespace(128)
    assert found["logins"] == {"403": 30}
    assert found["connections"] == {"opened": 300, "refused": 0, "accepted": 300}
