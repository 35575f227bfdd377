"""PendingSession.commit on its own: what one request owes the store and the cookie.

No HTTP here: a manager on a memory store and a clock the test moves. Each test names the
request it stands for; tests/session/test_lifecycle.py checks the same through Tornado.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import pytest

from campus.session import SessionManager
from campus.session.contract import ContractClock
from campus.session.manager import NOTHING, ROLLING_COOKIE_INTERVAL, Commit, PendingSession
from campus.session.stores.memory import MemoryStore

T = TypeVar("T")
SECRET = "a secret of at least thirty-two characters"


def run(work: Callable[[], Awaitable[T]]) -> T:
    return asyncio.run(work())  # type: ignore[arg-type]


@pytest.fixture
def store(clock: ContractClock) -> MemoryStore:
    return MemoryStore(max_sessions=100, clock=clock)


def manager(store: MemoryStore, clock: ContractClock, **policy: Any) -> SessionManager:
    return SessionManager(store, secrets=[SECRET], clock=clock, **policy)


async def written(commit: Commit) -> bool:
    assert commit.write is not None, "this commit owes the store nothing"
    return await commit.write()


async def stored_session(sessions: SessionManager, **data: Any) -> tuple[str, str]:
    """A session holding *data*, as a first request leaves it: its id and its cookie."""
    pending = await sessions.load(None)
    pending.session.update(data)
    commit = pending.commit("finish()")
    assert await written(commit) and commit.cookie is not None and commit.cookie.value
    return pending.session.id, commit.cookie.value


def test_a_new_session_left_empty_owes_nothing(store: MemoryStore, clock: ContractClock) -> None:
    async def request() -> None:
        pending = await manager(store, clock).load(None)
        assert pending.commit("finish()") == NOTHING
        assert await store.count() == 0

    run(request)


def test_save_uninitialized_stores_an_empty_session(
    store: MemoryStore, clock: ContractClock
) -> None:
    async def request() -> None:
        pending = await manager(store, clock, save_uninitialized=True).load(None)
        commit = pending.commit("finish()")
        assert await written(commit) and commit.cookie is not None
        assert await store.load(pending.session.id, touch=None) is not None

    run(request)


def test_a_new_session_with_data_is_created_then_its_cookie_set(
    store: MemoryStore, clock: ContractClock
) -> None:
    async def request() -> None:
        sessions = manager(store, clock)
        sid, cookie = await stored_session(sessions, cart=["book"])
        record = await store.load(sid, touch=None)
        assert record is not None and record.decoded() == {"cart": ["book"]}
        assert sessions.signer.verify(sessions.cookie.name, cookie, max_age=60) is not None

    run(request)


def test_a_read_only_request_owes_nothing_until_the_rolling_cookie_is_due(
    store: MemoryStore, clock: ContractClock
) -> None:
    async def request() -> None:
        sessions = manager(store, clock)
        _, cookie = await stored_session(sessions, cart=[])
        read = await sessions.load(cookie)
        assert read.session["cart"] == []
        assert read.commit("finish()") == NOTHING  # just signed: no cookie again yet
        clock.advance(ROLLING_COOKIE_INTERVAL + 1)
        later = (await sessions.load(cookie)).commit("finish()")
        assert later.write is None and later.cookie is not None and later.cookie.value

    run(request)


def test_a_change_writes_only_its_keys_and_keeps_another_requests(
    store: MemoryStore, clock: ContractClock
) -> None:
    async def requests() -> None:
        sessions = manager(store, clock)
        sid, cookie = await stored_session(sessions, cart=[], theme="light")
        one, two = await sessions.load(cookie), await sessions.load(cookie)  # concurrent
        one.session["cart"] = ["book"]
        two.session["theme"] = "dark"  # two still sees the empty cart: it does not write it
        assert await written(one.commit("finish()"))
        assert await written(two.commit("finish()"))
        record = await store.load(sid, touch=None)
        assert record is not None and record.decoded() == {"cart": ["book"], "theme": "dark"}
        three = await sessions.load(cookie)
        del three.session["theme"]
        assert await written(three.commit("finish()"))
        record = await store.load(sid, touch=None)
        assert record is not None and record.decoded() == {"cart": ["book"]}

    run(requests)


def test_a_nested_edit_counts_as_a_change(store: MemoryStore, clock: ContractClock) -> None:
    async def request() -> None:
        sessions = manager(store, clock)
        sid, cookie = await stored_session(sessions, cart=["book"])
        pending = await sessions.load(cookie)
        pending.session["cart"].append("pen")  # no assignment: found by comparing JSON
        assert await written(pending.commit("finish()"))
        record = await store.load(sid, touch=None)
        assert record is not None and record.decoded() == {"cart": ["book", "pen"]}

    run(request)


@pytest.mark.parametrize(
    "edit",
    [
        lambda s: s.get("cart").append("pen"),
        lambda s: next(iter(s.values())).append("pen"),
        lambda s: dict(s.items())["cart"].append("pen"),
        lambda s: s.setdefault("cart", []).append("pen"),
    ],
    ids=["get", "values", "items", "setdefault"],
)
def test_a_nested_edit_through_any_read_counts(
    store: MemoryStore, clock: ContractClock, edit: Callable[[Any], None]
) -> None:
    async def request() -> None:
        sessions = manager(store, clock)
        sid, cookie = await stored_session(sessions, cart=["book"])
        pending = await sessions.load(cookie)
        edit(pending.session)
        assert await written(pending.commit("finish()"))
        record = await store.load(sid, touch=None)
        assert record is not None and record.decoded() == {"cart": ["book", "pen"]}

    run(request)


def test_a_value_no_one_took_out_is_not_compared_nor_rewritten(
    store: MemoryStore, clock: ContractClock
) -> None:
    """Only what a request assigned or took out as a dict or list can have changed: a value
    stored in another spelling (another writer's spaces) is left alone by a reader."""

    async def request() -> None:
        sessions = manager(store, clock)
        sid, cookie = await stored_session(sessions, user="ann", prefs={"theme": "dark"})
        other = {"prefs": '{"theme": "dark"}'}  # as another writer spelled it
        assert await store.update(sid, other, [], ttl=600, user=None)
        pending = await sessions.load(cookie)
        assert pending.session["user"] == "ann" and "prefs" in pending.session
        assert pending.commit("finish()") == NOTHING
        again = await sessions.load(cookie)
        assert again.session["prefs"] == {"theme": "dark"}  # taken out: compared, rewritten
        assert await written(again.commit("finish()"))

    run(request)


def test_regenerate_moves_the_data_to_a_new_id_and_deletes_the_old(
    store: MemoryStore, clock: ContractClock
) -> None:
    async def login() -> None:
        sessions = manager(store, clock)
        old, cookie = await stored_session(sessions, cart=["book"])
        pending = await sessions.load(cookie)
        pending.session.regenerate()
        pending.session["user"] = "ann"
        commit = pending.commit("finish()")
        assert await written(commit)
        new = pending.session.id
        assert new != old and await store.load(old, touch=None) is None
        record = await store.load(new, touch=None)
        assert record is not None and record.decoded() == {"cart": ["book"], "user": "ann"}
        assert commit.cookie is not None and commit.cookie.value is not None
        assert sessions.signer.verify("campus.sid", commit.cookie.value, max_age=60) is not None

    run(login)


def test_destroy_deletes_the_record_and_expires_the_cookie(
    store: MemoryStore, clock: ContractClock
) -> None:
    async def logout() -> None:
        sessions = manager(store, clock)
        sid, cookie = await stored_session(sessions, user="ann")
        pending = await sessions.load(cookie)
        pending.session.destroy()
        commit = pending.commit("finish()")
        assert await written(commit)
        assert commit.cookie is not None and commit.cookie.value is None  # expire it
        assert await store.load(sid, touch=None) is None

    run(logout)


def test_a_session_destroyed_meanwhile_stays_destroyed(
    store: MemoryStore, clock: ContractClock
) -> None:
    async def requests() -> None:
        sessions = manager(store, clock)
        sid, cookie = await stored_session(sessions, user="ann")
        slow = await sessions.load(cookie)  # still running when the user logs out
        await store.delete(sid)
        slow.session["late"] = "write"
        assert not await written(slow.commit("finish()"))  # did not land: no cookie follows
        assert await store.load(sid, touch=None) is None

    run(requests)


def test_after_the_commit_the_session_cannot_change(
    store: MemoryStore, clock: ContractClock
) -> None:
    async def request() -> PendingSession:
        pending = await manager(store, clock).load(None)
        pending.session["a"] = 1
        pending.commit("flush()")
        return pending

    pending = run(request)
    assert pending.committed
    with pytest.raises(RuntimeError, match=r"after flush\(\)"):
        pending.session["b"] = 2
    with pytest.raises(RuntimeError, match="already committed"):
        pending.commit("finish()")


def test_a_nested_edit_after_an_early_commit_is_an_error_once(
    store: MemoryStore, clock: ContractClock
) -> None:
    async def request() -> PendingSession:
        sessions = manager(store, clock)
        _, cookie = await stored_session(sessions, cart=[])
        pending = await sessions.load(cookie)
        pending.commit("save_session()")
        pending.session["cart"].append("pen")  # no assignment to refuse it
        return pending

    pending = run(request)
    with pytest.raises(RuntimeError, match=r"changed after save_session\(\)"):
        pending.check_unchanged()
    pending.check_unchanged()  # the error answer that follows must not fail again


def test_abandon_writes_nothing_and_seals(store: MemoryStore, clock: ContractClock) -> None:
    async def failed_request() -> PendingSession:
        pending = await manager(store, clock).load(None)
        pending.session["a"] = 1
        pending.abandon("finish() of a failed response")
        return pending

    pending = run(failed_request)
    assert pending.committed and run(store.count) == 0
    with pytest.raises(RuntimeError, match="failed response"):
        pending.session["b"] = 2


def test_a_value_json_cannot_hold_is_refused_naming_its_key(
    store: MemoryStore, clock: ContractClock
) -> None:
    async def request() -> PendingSession:
        pending = await manager(store, clock).load(None)
        pending.session["cart"] = []
        pending.session["cart"].append(object())  # nested: caught at the commit
        return pending

    pending = run(request)
    with pytest.raises(TypeError, match="cart"):
        pending.commit("finish()")
