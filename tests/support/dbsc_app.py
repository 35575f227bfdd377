"""Device-bound sessions in-process, for the DBSC tests: the app's services with metrics on,
a DBSC client per test (tests/support/dbsc.py), and the steps and readings they share.

Import the fixtures by name into a test module (``make``, ``metered_services``: it replaces
the ``services`` fixture there).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Iterator

import pytest
from tornado.httpclient import AsyncHTTPClient, HTTPResponse
from tornado.ioloop import IOLoop

from campus.config import Config
from campus.observability.metrics import Metrics
from campus.session.contract import ContractClock
from campus.web.binding import policy
from campus.web.services import Services
from tests.support.apps import PASSWORD, closing_store, make_services
from tests.support.dbsc import DbscClient

ANN = "ann@campus.test"
REGISTER, REFRESH = policy.REGISTER_PATH, policy.REFRESH_PATH
Make = Callable[..., DbscClient]


@pytest.fixture(name="services")
def metered_services(config: Config, clock: ContractClock, io_loop: IOLoop) -> Iterator[Services]:
    """The usual services, with metrics on: the tests read the binding counters."""
    built = dataclasses.replace(make_services(config, clock), metrics=Metrics())
    yield from closing_store(built, io_loop)


@pytest.fixture
def make(http_client: AsyncHTTPClient, base_url: str) -> Make:
    def client(alg: str = "ES256") -> DbscClient:
        return DbscClient(http_client, base_url, alg)

    return client


def counter(services: Services, name: str, **labels: str) -> float:
    assert services.metrics is not None
    value = services.metrics.registry.get_sample_value(name, labels)
    return value or 0.0


def bound_cookie_set(response: HTTPResponse) -> str | None:
    """The value a response gives the bound cookie ("" when it expires it), or None."""
    for line in response.headers.get_list("Set-Cookie"):
        name, _, rest = line.partition("=")
        if name == "campus.sid.bound":
            return rest.split(";", 1)[0].strip('"')
    return None


def error(response: HTTPResponse) -> str:
    message: str = json.loads(response.body)["errorMessage"]
    return message


async def signed_in(make: Make, alg: str = "ES256") -> DbscClient:
    client = make(alg)
    response = await client.login(ANN, PASSWORD)
    assert response.code == 200, response.body
    return client


async def bound(make: Make, alg: str = "ES256") -> DbscClient:
    client = await signed_in(make, alg)
    response = await client.register()
    assert response.code == 200, response.body
    return client


async def stored_data(services: Services, client: DbscClient) -> dict[str, str] | None:
    sessions = services.sessions
    verified = sessions.signer.verify("campus.sid", client.cookies["campus.sid"], max_age=1e9)
    assert verified is not None
    record = await sessions.store.load(verified[0], touch=None)
    return None if record is None else record.data
