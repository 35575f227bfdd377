"""A session refers to its user: it keeps the user's key and the sign-in facts, never a copy of
the record; /api/me answers the users file as it is now; a session whose user is gone ends at
its next request. On the memory store and on Redis."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from tornado.httpclient import HTTPResponse

from campus.accounts.follow import UsersFileFollower
from campus.config import Config
from campus.session.store import SessionRecord, encode_values, new_session_id
from campus.web.services import Services
from tests.support.apps import (
    CHEAP_HASHER,
    PASSWORD,
    USERS,
    Fetch,
    make_config,
    session_cookie,
    user_index,
)

pytestmark = pytest.mark.gen_test

ANN, BOB = USERS  # the suite's users file: Ann (student) and Bob (staff)


@pytest.fixture(autouse=True)
def both_stores(store_kind: str) -> None:
    """Every test here runs on the memory store and on Redis."""


@pytest.fixture
def config(tmp_path: Path) -> Config:
    """A users file of each test's own (the suite's Ann and Bob), which a test may change."""
    path = tmp_path / "users.json"
    path.write_text(
        json.dumps([{**u, "password_hash": CHEAP_HASHER.hash(PASSWORD)} for u in USERS])
    )
    return make_config(path)


async def log_in(fetch: Fetch, email: str = "ann@campus.test") -> str:
    body = json.dumps({"email": email, "password": PASSWORD})
    response = await fetch("/login", method="POST", body=body)
    assert response.code == 200, response.body
    cookie = session_cookie(response)
    assert cookie
    return cookie


async def me(fetch: Fetch, cookie: str) -> HTTPResponse:
    return await fetch("/api/me", headers={"Cookie": f"campus.sid={cookie}"})


def sid_of(services: Services, cookie: str) -> str:
    verified = services.sessions.signer.verify("campus.sid", cookie, max_age=10**9)
    assert verified is not None
    return verified[0]


async def stored(services: Services, cookie: str) -> dict[str, Any] | None:
    record = await services.sessions.store.load(sid_of(services, cookie), touch=None)
    return None if record is None else record.decoded()


async def test_a_session_keeps_the_users_key_and_the_sign_in_facts_only(
    fetch: Fetch, services: Services
) -> None:
    cookie = await log_in(fetch, " ANN@Campus.test ")
    data = await stored(services, cookie)
    assert data is not None
    # Beside them, the device binding's offer (a registration challenge), nothing else.
    offer = {key for key in data if key.startswith("device_challenge:")}
    assert len(offer) == 1 and data.keys() - offer == {"user", "signin"}
    assert data["user"] == "ann@campus.test"
    assert data["signin"].keys() == {"at", "address", "agent"}
    assert json.loads((await me(fetch, cookie)).body) == {"user": ANN}


async def test_api_me_answers_the_users_file_as_it_is_now(fetch: Fetch, services: Services) -> None:
    cookie = await log_in(fetch)
    users = services.users
    edited = [{**ANN, "name": "Ann Smith", "roles": ["tutor"]}, BOB]
    hashed = users.get("ann@campus.test")
    assert hashed is not None
    records = [{**user, "password_hash": hashed.password_hash} for user in edited]
    users.replace(users.build(records))
    assert json.loads((await me(fetch, cookie)).body) == {"user": edited[0]}


async def test_a_session_whose_user_is_gone_ends_at_its_next_request(
    fetch: Fetch, services: Services
) -> None:
    ann, bob = await log_in(fetch), await log_in(fetch, "bob@campus.test")
    users = services.users
    bob_user = users.get("bob@campus.test")
    assert bob_user is not None
    users.replace(users.build([{**BOB, "password_hash": bob_user.password_hash}]))
    response = await me(fetch, ann)
    assert response.code == 401
    assert json.loads(response.body) == {"errorMessage": "Not logged in"}
    assert session_cookie(response) == ""  # the cookie is expired
    assert await stored(services, ann) is None  # and the record deleted
    assert (await me(fetch, bob)).code == 200
    assert await user_index(services.sessions.store).count() == 1


@pytest.mark.parametrize(
    ("user", "answer"),
    [
        # campus 0.2 kept a copy of the record: it is read for its email, nothing more.
        ({"email": " Ann@Campus.TEST", "name": "Stale", "roles": ["admin"]}, 200),
        ({"email": "gone@campus.test", "name": "Gone"}, 401),
        ({"name": "no email"}, 401),
        (42, 401),
        ("nobody@campus.test", 401),
    ],
)
async def test_what_a_stored_session_says_of_its_user(
    fetch: Fetch, services: Services, user: object, answer: int
) -> None:
    sid, store = new_session_id(), services.sessions.store
    data = {"user": user, "signin": {"at": int(time.time()), "address": "::1", "agent": "x"}}
    expires = int(time.time()) + 3600
    owner = "ann@campus.test" if answer == 200 else None
    await store.create(sid, SessionRecord(encode_values(data), expires, owner), ttl=600)
    cookie = services.sessions.signer.sign("campus.sid", sid)
    response = await me(fetch, cookie)
    assert response.code == answer
    if answer == 200:
        assert json.loads(response.body) == {"user": ANN}  # never the stale copy
        listed = await fetch("/api/sessions", headers={"Cookie": f"campus.sid={cookie}"})
        assert [s["current"] for s in json.loads(listed.body)["sessions"]] == [True]
        assert await user_index(store).delete_user("ann@campus.test") == 1  # log out everywhere
    else:
        assert await store.load(sid, touch=None) is None


async def test_a_sign_in_newer_than_the_last_look_makes_the_process_look_again(
    fetch: Fetch, services: Services, config: Config
) -> None:
    """Carl was added and signed in on another worker, which polled the file first: this
    process looks at the file again rather than end his session. Dave, who is in no version
    of the file, is looked for too, and his session ends."""
    UsersFileFollower(services.users)  # attached, not started: no poll unless asked
    carl = {"email": "carl@campus.test", "name": "Carl"}
    path = Path(config.users.file)
    records = json.loads(path.read_text())
    path.write_text(json.dumps([*records, {**carl, "password_hash": CHEAP_HASHER.hash("x")}]))
    assert services.users.get("carl@campus.test") is None  # not read yet
    store, expires = services.sessions.store, int(time.time()) + 3600
    cookies = {}
    for email in ("carl@campus.test", "dave@campus.test"):
        sid = new_session_id()
        data = {"user": email, "signin": {"at": int(time.time()), "address": "::1", "agent": "x"}}
        await store.create(sid, SessionRecord(encode_values(data), expires, email), ttl=600)
        cookies[email] = services.sessions.signer.sign("campus.sid", sid)
    response = await me(fetch, cookies["carl@campus.test"])
    assert (response.code, json.loads(response.body)) == (200, {"user": carl})
    assert (await me(fetch, cookies["dave@campus.test"])).code == 401
    assert await user_index(store).count() == 1
