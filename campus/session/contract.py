"""The store contract as a pytest suite you can run against your own store.

Every store campus ships passes these tests, and a third one (PostgreSQL, Valkey, ...) should
too. Subclass the contract in one of your own test modules and say how to build your store::

    import pytest
    from campus.session.contract import StoreContract

    class TestMyStore(StoreContract):
        async def make_store(self, clock):
            return MyStore(dsn="...", clock=clock)

``StoreContract`` covers all three protocols; take only the parts your store implements with
:class:`SessionStoreContract` (all a session store needs), :class:`UserSessionsContract` and
:class:`AttemptCountersContract`. Each test builds a fresh store inside its own event loop
(``make_store``, then ``close_store``), so no pytest plugin for asyncio is needed; empty your
backend in ``make_store`` (or an autouse fixture) so tests do not see each other's data.
Importing this module needs no pytest; running its tests does.

Time: every store takes a clock, and the tests move it. A store whose idle expiry is decided
by that clock (an in-process store) is tested without waiting; one whose server keeps its own
time (Redis TTLs) sets ``idle_follows_clock = False`` and those few tests wait in real time.

For assertion details on failure, call ``pytest.register_assert_rewrite(
"campus.session.contract")`` in your conftest.py before importing this module.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any, cast

with contextlib.suppress(ModuleNotFoundError):  # only while the tests run
    import pytest

from campus.session.store import (
    AttemptCounters,
    SessionRecord,
    SessionStore,
    UserSessions,
    encode_values,
    new_session_id,
    session_ref,
)

__all__ = [
    "AttemptCountersContract",
    "ContractClock",
    "SessionStoreContract",
    "StoreContract",
    "UserSessionsContract",
]

HOUR = 3600
WINDOW = 100
#: Seconds of real time a remote store's calls may take between a step and its check.
SLACK = 2.0
ANN, BOB = "ann@campus.test", "bob@campus.test"


class ContractClock:
    """Real time plus an offset the tests push forward (a remote server's clock stays real)."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset

    def advance(self, seconds: float) -> None:
        self.offset += seconds


Test = Callable[[Any, Any, ContractClock], Awaitable[None]]


def _contract(test: Test) -> Callable[[Any], None]:
    """Turn ``async def test_x(self, store, clock)`` into a plain pytest test."""

    def run(self: _Base) -> None:
        clock = ContractClock()
        self.run(clock, lambda store: test(self, store, clock))

    run.__name__, run.__qualname__, run.__doc__ = test.__name__, test.__qualname__, test.__doc__
    return run


class _Base:
    idle_follows_clock = True

    async def make_store(self, clock: ContractClock) -> Any:
        """A fresh, empty store on ``clock``; built inside the test's event loop."""
        raise NotImplementedError("implement make_store(clock) in your contract subclass")

    async def close_store(self, store: Any) -> None:
        await store.close()

    def run(self, clock: ContractClock, test: Callable[[Any], Awaitable[None]]) -> None:
        async def main() -> None:
            store = await self.make_store(clock)
            try:
                await test(store)
            finally:
                await self.close_store(store)

        asyncio.run(main())

    async def idle(self, clock: ContractClock, seconds: float) -> None:
        """Let ``seconds`` pass for idle expiry: on the clock, or in real time."""
        if self.idle_follows_clock:
            clock.advance(seconds)
        else:
            await asyncio.sleep(seconds)


def record(
    clock: ContractClock, user: str | None = None, lifetime: int = HOUR, **data: Any
) -> SessionRecord:
    return SessionRecord(encode_values(data), int(clock()) + lifetime, user)


async def saved(
    store: SessionStore, clock: ContractClock, user: str | None = None, **data: Any
) -> str:
    sid = new_session_id()
    await store.create(sid, record(clock, user, **data), ttl=60)
    return sid


def implements(store: object, protocol: type) -> bool:
    """Whether ``store`` has every method of ``protocol`` (a plain bool: no type narrowing).

    By name, not isinstance(): a proxy that forwards through __getattr__ counts.
    """
    names = [n for n in vars(protocol) if not n.startswith("_")]
    return all(callable(getattr(store, name, None)) for name in names)


TRICKY = {
    "empty_list": [],
    "empty_dict": {},
    "big": 2**62 + 1,
    "float": 0.1 + 0.2,
    "text": 'ünïcødé "quoted" / slash \\ \u2028',
    "nested": {"a": [{"b": None}, True, False, -0.0, 1e300]},
}


class SessionStoreContract(_Base):
    """:class:`~campus.session.store.SessionStore`: records, merges, expiry, destruction."""

    @_contract
    async def test_unknown_id_loads_as_none(self, store: SessionStore, clock: Any) -> None:
        assert await store.load(new_session_id(), touch=60) is None

    @_contract
    async def test_create_then_load_round_trips(
        self, store: SessionStore, clock: ContractClock
    ) -> None:
        sid = new_session_id()
        original = record(clock, ANN, cart=[1, 2], name="Ann")
        await store.create(sid, original, ttl=60)
        loaded = await store.load(sid, touch=60)
        assert loaded is not None
        assert loaded.decoded() == {"cart": [1, 2], "name": "Ann"}
        assert (loaded.expires, loaded.user) == (original.expires, ANN)

    @_contract
    async def test_values_survive_an_update_exactly(
        self, store: SessionStore, clock: ContractClock
    ) -> None:
        """A store that merges in its own language must never re-encode (mangle) values."""
        sid = await saved(store, clock, keep="me")
        assert await store.update(sid, encode_values(TRICKY), [], ttl=60, user=None)
        loaded = await store.load(sid, touch=None)
        assert loaded is not None
        assert loaded.decoded() == {"keep": "me", **TRICKY}
        assert json.dumps(loaded.decoded()["big"]) == str(2**62 + 1)

    @_contract
    async def test_update_merges_only_the_given_keys(
        self, store: SessionStore, clock: ContractClock
    ) -> None:
        sid = await saved(store, clock, a=1, b=2, c=3)
        assert await store.update(sid, encode_values({"b": 20, "d": 4}), ["c"], ttl=60, user=None)
        loaded = await store.load(sid, touch=None)
        assert loaded is not None and loaded.decoded() == {"a": 1, "b": 20, "d": 4}

    @_contract
    async def test_concurrent_updates_of_different_keys_both_survive(
        self, store: SessionStore, clock: ContractClock
    ) -> None:
        sid = await saved(store, clock)
        writes = [
            store.update(sid, encode_values({f"k{i}": i}), [], ttl=60, user=None) for i in range(20)
        ]
        assert all(await asyncio.gather(*writes))
        loaded = await store.load(sid, touch=None)
        assert loaded is not None and loaded.decoded() == {f"k{i}": i for i in range(20)}

    @_contract
    async def test_update_never_resurrects_a_deleted_session(
        self, store: SessionStore, clock: ContractClock
    ) -> None:
        sid = await saved(store, clock, ANN, account={"email": ANN})
        await store.delete(sid)
        assert not await store.update(sid, encode_values({"late": True}), [], ttl=60, user=ANN)
        assert await store.load(sid, touch=60) is None

    @_contract
    async def test_update_of_a_never_stored_id_writes_nothing(
        self, store: SessionStore, clock: Any
    ) -> None:
        sid = new_session_id()
        assert not await store.update(sid, encode_values({"x": 1}), [], ttl=60, user=None)
        assert await store.load(sid, touch=None) is None
        if implements(store, UserSessions):
            assert await cast(UserSessions, store).count() == 0

    @_contract
    async def test_create_replacing_an_id_deletes_the_old_record(
        self, store: SessionStore, clock: ContractClock
    ) -> None:
        old = await saved(store, clock, visitor="data")
        new = new_session_id()
        await store.create(new, record(clock, "u", visitor="data"), ttl=60, replaces=old)
        assert await store.load(old, touch=None) is None
        assert await store.load(new, touch=None) is not None

    @_contract
    async def test_absolute_expiry_is_enforced_on_load_and_update(
        self, store: SessionStore, clock: ContractClock
    ) -> None:
        sid = new_session_id()
        await store.create(sid, record(clock, lifetime=100, x=1), ttl=60)
        clock.advance(101)
        assert await store.load(sid, touch=60) is None
        assert not await store.update(sid, encode_values({"x": 2}), [], ttl=60, user=None)

    @_contract
    async def test_idle_expiry_and_touch(self, store: SessionStore, clock: ContractClock) -> None:
        touched, untouched = await saved(store, clock, a=1), await saved(store, clock, b=1)
        for sid in (touched, untouched):
            await store.update(sid, {}, [], ttl=1, user=None)
        await self.idle(clock, 0.6)
        assert await store.load(touched, touch=1) is not None  # pushes its idle expiry
        await self.idle(clock, 0.6)
        assert await store.load(untouched, touch=None) is None
        assert await store.load(touched, touch=None) is not None
        await self.idle(clock, 1.1)
        assert await store.load(touched, touch=None) is None

    @_contract
    async def test_ping(self, store: SessionStore, clock: Any) -> None:
        await store.ping()


class UserSessionsContract(_Base):
    """:class:`~campus.session.store.UserSessions`: log out everywhere, list, end, count."""

    @_contract
    async def test_delete_user_destroys_every_session_of_that_user_only(
        self, store: Any, clock: ContractClock
    ) -> None:
        ann = [await saved(store, clock, ANN) for _ in range(3)]
        bob = await saved(store, clock, BOB)
        # A session that becomes Ann's through an update counts as hers too.
        later = await saved(store, clock)
        await store.update(later, encode_values({"user": "ann"}), [], ttl=60, user=ANN)

        assert await store.delete_user(ANN) == 4
        for sid in [*ann, later]:
            assert await store.load(sid, touch=None) is None
            assert not await store.update(sid, encode_values({"x": 1}), [], ttl=60, user=None)
        assert await store.load(bob, touch=None) is not None
        assert await store.delete_user(ANN) == 0

    @_contract
    async def test_count(self, store: Any, clock: ContractClock) -> None:
        for _ in range(5):
            await saved(store, clock)
        await saved(store, clock, "someone")  # a user's session: its index is no session
        assert await store.count() == 6

    @_contract
    async def test_lists_only_that_users_live_sessions(
        self, store: Any, clock: ContractClock
    ) -> None:
        assert implements(store, UserSessions), f"{type(store).__name__} lacks UserSessions"
        ann = [await saved(store, clock, ANN, n=i) for i in range(3)]
        await saved(store, clock, BOB)
        await saved(store, clock)
        gone = await saved(store, clock, ANN)
        await store.delete(gone)
        listed = {s.ref: s for s in await store.sessions_of(ANN)}
        assert set(listed) == {session_ref(sid) for sid in ann}
        first = listed[session_ref(ann[0])]
        assert first.record.decoded() == {"n": 0} and first.record.user == ANN
        assert clock() + 55 < first.idle_deadline <= clock() + 61
        assert await store.sessions_of("nobody@campus.test") == []

    @_contract
    async def test_the_idle_deadline_follows_use(self, store: Any, clock: ContractClock) -> None:
        sid = await saved(store, clock, ANN)
        await store.load(sid, touch=600)
        (listed,) = await store.sessions_of(ANN)
        assert clock() + 590 < listed.idle_deadline <= clock() + 601
        # ... and never passes the absolute deadline
        short = new_session_id()
        await store.create(short, record(clock, ANN, lifetime=100), ttl=60)
        await store.load(short, touch=600)
        listed = {s.ref: s for s in await store.sessions_of(ANN)}
        assert listed[session_ref(short)].idle_deadline <= listed[session_ref(short)].record.expires

    @_contract
    async def test_sessions_that_ended_by_themselves_are_not_listed(
        self, store: Any, clock: ContractClock
    ) -> None:
        idle = new_session_id()
        await store.create(idle, record(clock, ANN), ttl=1)
        old = new_session_id()
        await store.create(old, record(clock, ANN, lifetime=2), ttl=60)
        live = await saved(store, clock, ANN)
        await self.idle(clock, 1.1)
        clock.advance(2)
        assert [s.ref for s in await store.sessions_of(ANN)] == [session_ref(live)]

    @_contract
    async def test_end_sessions_ends_those_and_no_others(
        self, store: Any, clock: ContractClock
    ) -> None:
        ann = [await saved(store, clock, ANN) for _ in range(3)]
        bob = await saved(store, clock, BOB)
        refs = [session_ref(ann[0]), session_ref(ann[1]), session_ref(bob), "0" * 64]
        assert await store.end_sessions(ANN, refs) == 2  # Bob's and unknown refs: ignored
        assert await store.load(ann[0], touch=None) is None
        assert await store.load(ann[2], touch=None) is not None
        assert await store.load(bob, touch=None) is not None
        assert [s.ref for s in await store.sessions_of(ANN)] == [session_ref(ann[2])]
        assert await store.end_sessions(ANN, refs) == 0

    @_contract
    async def test_an_ended_session_stays_ended(self, store: Any, clock: ContractClock) -> None:
        """A request of that session still in flight must not write it back."""
        sid = await saved(store, clock, ANN, cart=[1])
        assert await store.end_sessions(ANN, [session_ref(sid)]) == 1
        assert not await store.update(sid, encode_values({"cart": [1, 2]}), [], ttl=60, user=ANN)
        assert await store.load(sid, touch=60) is None
        assert await store.sessions_of(ANN) == []


class AttemptCountersContract(_Base):
    """:class:`~campus.session.store.AttemptCounters`: reserve first, give back on success."""

    @staticmethod
    async def reserve(
        store: AttemptCounters, *keys: str, limit: int = 3, attempt: str = ""
    ) -> float:
        attempt = attempt or new_session_id()
        return await store.reserve(list(keys), attempt, window=WINDOW, limit=limit)

    @_contract
    async def test_reservations_up_to_the_limit_then_refusals(
        self, store: Any, clock: ContractClock
    ) -> None:
        assert implements(store, AttemptCounters), f"{type(store).__name__} lacks counters"
        assert [await self.reserve(store, "email:ann") for _ in range(3)] == [0.0, 0.0, 0.0]
        assert await self.reserve(store, "email:ann") == pytest.approx(WINDOW, abs=SLACK)
        assert await self.reserve(store, "email:bob") == 0.0  # keys are independent
        assert await self.reserve(store, "email:ann", limit=4) == 0.0  # the limit is the caller's

    @_contract
    async def test_all_keys_or_none(self, store: Any, clock: ContractClock) -> None:
        for _ in range(3):
            await self.reserve(store, "addr:a")
        assert await self.reserve(store, "addr:a", "email:x") > 0
        # the refusal counted nothing against the other key
        assert [await self.reserve(store, "email:x") for _ in range(3)] == [0.0, 0.0, 0.0]
        assert await self.reserve(store, "addr:b", "email:x") > 0
        assert await self.reserve(store, "addr:b") == 0.0

    @_contract
    async def test_the_window_slides(self, store: Any, clock: ContractClock) -> None:
        for _ in range(3):  # attempts at t = 0, 10, 20
            await self.reserve(store, "k")
            clock.advance(10)
        clock.advance(-10)
        assert await self.reserve(store, "k") == pytest.approx(80, abs=SLACK)  # until t=0 ages out
        clock.advance(80.5)
        assert await self.reserve(store, "k") == 0.0  # t = 100.5
        assert await self.reserve(store, "k") == pytest.approx(10 + WINDOW - 100.5, abs=SLACK)
        clock.advance(WINDOW + 1)
        assert await self.reserve(store, "k") == 0.0

    @_contract
    async def test_give_back_returns_the_attempt_and_forget_clears(
        self, store: Any, clock: ContractClock
    ) -> None:
        await self.reserve(store, "addr:a", "email:x")
        await self.reserve(store, "addr:a", "email:x")
        await self.reserve(store, "addr:a", "email:x", attempt="good")
        assert await self.reserve(store, "addr:a") > 0 and await self.reserve(store, "email:x") > 0
        await store.give_back("good", ["addr:a"], forget=["email:x"])
        assert await self.reserve(store, "addr:a") == 0.0  # one slot back, not three
        assert await self.reserve(store, "addr:a") > 0
        assert [await self.reserve(store, "email:x") for _ in range(3)] == [0.0, 0.0, 0.0]
        await store.give_back("unknown", ["addr:a", "never:seen"])  # harmless

    @_contract
    async def test_concurrent_reservations_are_counted_exactly(
        self, store: Any, clock: ContractClock
    ) -> None:
        await self.reserve(store, "warm-up")  # connections first, then the race
        results = await asyncio.gather(
            *(self.reserve(store, "addr:k", f"email:{i}", limit=5) for i in range(12))
        )
        assert sorted(results)[:6] == [0.0] * 5 + [sorted(results)[5]]
        assert len([r for r in results if r == 0.0]) == 5  # five reached a password check
        assert await self.reserve(store, "addr:k", limit=5) > 0

    @_contract
    async def test_any_key_text_works(self, store: Any, clock: ContractClock) -> None:
        for key in ["", "email:" + "x" * 5000, "email:\ud800@\u00e9.test", "addr:::1"]:
            for _ in range(3):
                await self.reserve(store, key)
            assert await self.reserve(store, key) > 0, key
            assert await self.reserve(store, key + "!") == 0.0, key


class StoreContract(SessionStoreContract, UserSessionsContract, AttemptCountersContract):
    """All of it: what campus's own stores promise."""
