"""An unknown email and a wrong password take the same time: timing tells no account apart.

With realistic Argon2id parameters (OWASP's minimum: 19 MiB, two passes) the password check
dominates a login, so the unknown email must pay for one too: against a dummy hash with the
users' parameters. The medians of interleaved attempts are compared, generously bounded; a
missing dummy check would make the unknown email about thirty times faster.
"""

from __future__ import annotations

import dataclasses
import json
import statistics
import time
from pathlib import Path
from typing import Any

import argon2
import pytest

from campus.accounts.directory import UserDirectory
from campus.config import Config, LoginConfig
from campus.web.services import Services
from tests.support.apps import USERS

USER_EMAILS: tuple[str, ...] = tuple(str(user["email"]) for user in USERS)

REALISTIC = argon2.PasswordHasher(time_cost=2, memory_cost=19 * 1024, parallelism=1)
PASSWORD = "a realistic password, hashed realistically"
ROUNDS = 12


@pytest.fixture(scope="module")
def realistic_users(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("realistic") / "users.json"
    path.write_text(
        json.dumps([{**user, "password_hash": REALISTIC.hash(PASSWORD)} for user in USERS])
    )
    return path


@pytest.fixture
def config(config: Config, realistic_users: Path) -> Config:
    """The realistic users, and a throttle that does not get in the way of 24 failures."""
    return dataclasses.replace(
        config,
        users=dataclasses.replace(config.users, file=str(realistic_users)),
        login=LoginConfig(max_failures=10_000, window=60),
    )


def verify_time() -> float:
    """How long one realistic check takes on this machine, right now."""
    stored = REALISTIC.hash("x")
    times = []
    for _ in range(3):
        started = time.perf_counter()
        with pytest.raises(argon2.exceptions.VerifyMismatchError):
            REALISTIC.verify(stored, "y")
        times.append(time.perf_counter() - started)
    return statistics.median(times)


@pytest.mark.gen_test(timeout=60)
async def test_unknown_email_and_wrong_password_take_the_same_time(
    http_client: Any, base_url: str
) -> None:
    async def attempt(email: str) -> float:
        body = json.dumps({"email": email, "password": "not the password"})
        started = time.perf_counter()
        response = await http_client.fetch(
            base_url + "/login", method="POST", body=body, raise_error=False
        )
        elapsed = time.perf_counter() - started
        assert response.code == 403
        return elapsed

    await attempt("warm-up@campus.test")
    unknown: list[float] = []
    wrong: list[float] = []
    for round_ in range(ROUNDS):  # interleaved, alternating which goes first: drift cancels
        pair = [("nobody@campus.test", unknown), ("ann@campus.test", wrong)]
        for email, times in pair if round_ % 2 else reversed(pair):
            times.append(await attempt(email))
    slower = max(statistics.median(unknown), statistics.median(wrong))
    faster = min(statistics.median(unknown), statistics.median(wrong))
    assert slower / faster < 1.5, (unknown, wrong)
    assert faster > 0.5 * verify_time()  # both really ran a realistic check


SLOWER = argon2.PasswordHasher(time_cost=6, memory_cost=19 * 1024, parallelism=1)


@pytest.fixture
def mixed_users(tmp_path: Path) -> Path:
    """Ann hashed at one cost, Bob at three times that (added later, with other settings)."""
    path = tmp_path / "users.json"
    ann, bob = USERS
    path.write_text(
        json.dumps(
            [
                {**ann, "password_hash": REALISTIC.hash(PASSWORD)},
                {**bob, "password_hash": SLOWER.hash(PASSWORD)},
            ]
        )
    )
    return path


@pytest.mark.gen_test(timeout=90)
async def test_an_unknown_email_takes_the_time_of_a_user_of_the_set_it_draws(
    http_client: Any, base_url: str, services: Services, mixed_users: Path
) -> None:
    """With parameters mixed in the file, an unknown email's 403 takes as long as that of a
    user whose hash has the set it draws (Ann's, or Bob's three times costlier one): which
    set, nobody outside can tell, so no time says "no such account"."""
    services.users.replace(UserDirectory.load(mixed_users).snapshot)
    snapshot = services.users.snapshot
    heavy = next(  # an unknown email that draws Bob's set, and one that draws Ann's
        f"nobody{n}@campus.test"
        for n in range(100)
        if argon2.extract_parameters(snapshot.dummy_for(f"nobody{n}@campus.test")).time_cost == 6
    )
    light = next(
        f"nobody{n}@campus.test"
        for n in range(100)
        if argon2.extract_parameters(snapshot.dummy_for(f"nobody{n}@campus.test")).time_cost == 2
    )

    async def attempt(email: str) -> float:
        body = json.dumps({"email": email, "password": "not the password"})
        started = time.perf_counter()
        response = await http_client.fetch(
            base_url + "/login", method="POST", body=body, raise_error=False
        )
        assert response.code == 403
        return time.perf_counter() - started

    await attempt("warm-up@campus.test")
    times: dict[str, list[float]] = {email: [] for email in (heavy, light, *USER_EMAILS)}
    for round_ in range(ROUNDS):
        order = list(times) if round_ % 2 else list(reversed(times))
        for email in order:
            times[email].append(await attempt(email))
    median = {email: statistics.median(taken) for email, taken in times.items()}
    ann, bob = USER_EMAILS
    assert 1 / 1.5 < median[heavy] / median[bob] < 1.5, times
    assert 1 / 1.5 < median[light] / median[ann] < 1.5, times
    assert median[bob] > 1.8 * median[ann]  # the sets really differ
