"""The bound on password checks (campus.accounts.gate) through POST /login: past it a login is
503 at once, with Retry-After and no failure counted; a trusted device has places of its own;
a check whose client has gone before a worker picked it up is never run.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import socket
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
from tornado.httpclient import HTTPResponse
from tornado.ioloop import IOLoop

from campus.accounts.gate import PER_ACCOUNT
from campus.accounts.users import UserDirectory
from campus.config import Config, LoginConfig
from campus.observability.metrics import Metrics
from campus.session.contract import ContractClock
from campus.web.devices import SUFFIX
from campus.web.services import Services, build_sessions
from tests.support.apps import ANN, PASSWORD, Fetch, closing_store, error_of, make_store
from tests.support.logs import access_lines

pytestmark = pytest.mark.gen_test

LIMIT = 3
BOB = "bob@campus.test"
DEVICE = "campus.sid" + SUFFIX


@pytest.fixture
def config(config: Config) -> Config:
    return dataclasses.replace(config, login=LoginConfig(max_failures=LIMIT, window=900))


@pytest.fixture
def executor() -> Iterator[ThreadPoolExecutor]:
    with ThreadPoolExecutor(max_workers=1) as pool:
        yield pool


@pytest.fixture
def services(
    config: Config, clock: ContractClock, io_loop: IOLoop, executor: ThreadPoolExecutor
) -> Iterator[Services]:
    """One hashing worker, which a test can hold busy, and metrics to read outcomes from."""
    users = UserDirectory.load(config.users.file, executor=executor, workers=1)
    services = Services(
        config=config,
        sessions=build_sessions(config, make_store(config, clock), clock=clock),
        users=users,
        metrics=Metrics(),
    )
    yield from closing_store(services, io_loop)


async def login(
    fetch: Fetch, password: str = PASSWORD, email: str = ANN, device: str | None = None
) -> HTTPResponse:
    headers = {"Content-Type": "application/json"}
    if device is not None:
        headers["Cookie"] = f"{DEVICE}={device}"
    body = json.dumps({"email": email, "password": password})
    return await fetch("/login", method="POST", body=body, headers=headers)


def device_of(response: HTTPResponse) -> str:
    for header in response.headers.get_list("Set-Cookie"):
        if header.startswith(DEVICE + "="):
            return header.split(";", 1)[0].split("=", 1)[1].strip('"')
    raise AssertionError(response.headers.get_list("Set-Cookie"))


def outcomes(services: Services) -> dict[str, float]:
    assert services.metrics is not None
    return {
        sample.labels["outcome"]: sample.value
        for family in services.metrics.logins.collect()
        for sample in family.samples
        if sample.name.endswith("_total")
    }


async def test_past_the_gate_a_login_is_503_at_once_and_counts_as_no_failure(
    fetch: Fetch, services: Services
) -> None:
    device = device_of(await login(fetch))  # this browser signed in before
    services.users.gate.admitted = services.users.gate.capacity  # every place taken
    for _ in range(LIMIT + 2):  # more than the limit: none is counted
        response = await login(fetch, "wrong")
        assert error_of(response, 503) == "Too many sign-ins, try again shortly"
        assert response.headers["Retry-After"] == "1"
    assert outcomes(services)["busy"] == LIMIT + 2
    # A trusted device has a reserve of its own on top.
    assert (await login(fetch, device=device)).code == 200
    services.users.gate.admitted = 0
    assert (await login(fetch)).code == 200  # not throttled: nothing was counted
    assert services.users.gate.admitted == 0  # every place given back


async def test_one_account_cannot_take_every_place_with_its_own_device_cookies(
    fetch: Fetch, services: Services, executor: ThreadPoolExecutor
) -> None:
    """Bob, who has an account, replays correct logins with device cookies of his own while
    the worker is busy: each success would give its count back, so only the gate can stop
    him from holding every place. He holds two; Ann's browser still gets one."""
    gate = services.users.gate
    bob_devices = [device_of(await login(fetch, email=BOB)) for _ in range(3)]
    ann_device = device_of(await login(fetch))
    release = threading.Event()
    busy = executor.submit(release.wait, 30)  # the only worker is busy: checks wait
    flood = [
        asyncio.ensure_future(login(fetch, email=BOB, device=bob_devices[n % 3]))
        for n in range(gate.capacity + gate.reserve)
    ]
    while gate.admitted + sum(login.done() for login in flood) < len(flood):
        await asyncio.sleep(0.01)  # each of Bob's logins is admitted, or answered
    held = gate.admitted
    ann = asyncio.ensure_future(login(fetch, device=ann_device))
    while gate.admitted == held and not ann.done():  # admitted (it waits its turn), or not
        await asyncio.sleep(0.01)
    release.set()
    busy.result()
    assert (await ann).code == 200
    codes = sorted(response.code for response in await asyncio.gather(*flood))
    assert codes == [200] * PER_ACCOUNT + [429] * (len(flood) - PER_ACCOUNT)


async def test_a_check_whose_client_left_is_not_run(
    fetch: Fetch,
    services: Services,
    executor: ThreadPoolExecutor,
    base_url: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The only worker is busy while the client sends its login and hangs up."""
    caplog.set_level(logging.INFO, "campus.access")
    release = threading.Event()
    busy = executor.submit(release.wait, 30)
    port = int(base_url.rsplit(":", 1)[1])
    body = json.dumps({"email": ANN, "password": PASSWORD}).encode()
    head = f"POST /login HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
    head += f"Content-Length: {len(body)}\r\n\r\n"
    with socket.create_connection(("127.0.0.1", port)) as client:
        client.sendall(head.encode() + body)
        while services.users.gate.admitted == 0:  # the check waits for the worker
            await asyncio.sleep(0.01)
    await asyncio.sleep(0.2)  # the server sees the close
    release.set()
    busy.result()
    while outcomes(services)["abandoned"] == 0:
        await asyncio.sleep(0.01)
    assert outcomes(services)["success"] == 0
    assert services.users.gate.admitted == 0
    assert [line["status"] for line in access_lines(caplog)] == ["499"]  # as nginx says it
    assert (await login(fetch)).code == 200  # the next one is checked as usual
