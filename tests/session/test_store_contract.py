"""One contract, every store: the same tests run against MemoryStore and RedisStore."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import pytest
from tornado.ioloop import IOLoop

from campus.session.store import (
    Attempt,
    SessionRecord,
    SessionStore,
    StoreUnavailable,
    encode_values,
    new_session_id,
)
from campus.session.stores.memory import MemoryStore
from campus.session.stores.redis import RedisStore, connect
from tests.conftest import FakeClock, RedisServer

pytestmark = pytest.mark.gen_test

HOUR = 3600


@pytest.fixture(params=["memory", "redis", "redis-cluster", "redis-sentinel"])
def store_kind(request: pytest.FixtureRequest) -> str:
    """Here also a real Redis Cluster and a real Sentinel group (tests/redis_topologies.py)."""
    return str(request.param)


@pytest.fixture
def store(
    store_kind: str, clock: FakeClock, request: pytest.FixtureRequest, io_loop: IOLoop
) -> Iterator[SessionStore]:
    if store_kind == "memory":
        yield MemoryStore(max_sessions=1000, clock=clock)
        return
    if store_kind == "redis":
        server: RedisServer = request.getfixturevalue("redis_server")
        request.getfixturevalue("redis_db")
        url = server.url
    else:
        topology = request.getfixturevalue(store_kind.replace("-", "_"))
        topology.flush()
        url = topology.url
    store = RedisStore(connect(url, timeout=1.0), prefix="test:", clock=clock)
    yield store
    # Closed here, on the test's loop: a client left to the garbage collector tears its
    # connections down in the middle of the next test.
    io_loop.run_sync(store.close)


def record(
    clock: FakeClock, user: str | None = None, lifetime: int = HOUR, **data: Any
) -> SessionRecord:
    return SessionRecord(encode_values(data), int(clock()) + lifetime, user)


async def saved(store: SessionStore, clock: FakeClock, **data: Any) -> str:
    sid = new_session_id()
    await store.create(sid, record(clock, **data), ttl=60)
    return sid


async def test_unknown_id_loads_as_none(store: SessionStore) -> None:
    assert await store.load(new_session_id(), touch=60) is None


async def test_create_then_load_round_trips(store: SessionStore, clock: FakeClock) -> None:
    sid = new_session_id()
    original = record(clock, user="ann@campus.test", cart=[1, 2], name="Ann")
    await store.create(sid, original, ttl=60)
    loaded = await store.load(sid, touch=60)
    assert loaded is not None
    assert loaded.decoded() == {"cart": [1, 2], "name": "Ann"}
    assert (loaded.expires, loaded.user) == (original.expires, "ann@campus.test")


TRICKY = {
    "empty_list": [],
    "empty_dict": {},
    "big": 2**62 + 1,
    "float": 0.1 + 0.2,
    "text": 'ünïcødé "quoted" / slash \\ \u2028',
    "nested": {"a": [{"b": None}, True, False, -0.0, 1e300]},
}


async def test_values_survive_an_update_exactly(store: SessionStore, clock: FakeClock) -> None:
    """Redis merges in Lua; its JSON codec must never see (and mangle) the values."""
    sid = await saved(store, clock, keep="me")
    assert await store.update(sid, encode_values(TRICKY), [], ttl=60, user=None)
    loaded = await store.load(sid, touch=None)
    assert loaded is not None
    assert loaded.decoded() == {"keep": "me", **TRICKY}
    assert json.dumps(loaded.decoded()["big"]) == str(2**62 + 1)


async def test_update_merges_only_the_given_keys(store: SessionStore, clock: FakeClock) -> None:
    sid = await saved(store, clock, a=1, b=2, c=3)
    assert await store.update(sid, encode_values({"b": 20, "d": 4}), ["c"], ttl=60, user=None)
    loaded = await store.load(sid, touch=None)
    assert loaded is not None and loaded.decoded() == {"a": 1, "b": 20, "d": 4}


async def test_concurrent_updates_of_different_keys_both_survive(
    store: SessionStore, clock: FakeClock
) -> None:
    sid = await saved(store, clock)
    writes = [
        store.update(sid, encode_values({f"k{i}": i}), [], ttl=60, user=None) for i in range(20)
    ]
    assert all(await asyncio.gather(*writes))
    loaded = await store.load(sid, touch=None)
    assert loaded is not None and loaded.decoded() == {f"k{i}": i for i in range(20)}


async def test_update_never_resurrects_a_deleted_session(
    store: SessionStore, clock: FakeClock
) -> None:
    sid = await saved(store, clock, account={"email": "ann@campus.test"})
    await store.delete(sid)
    assert not await store.update(sid, encode_values({"late": True}), [], ttl=60, user=None)
    assert await store.load(sid, touch=60) is None


async def test_update_of_a_never_stored_id_writes_nothing(store: SessionStore) -> None:
    sid = new_session_id()
    assert not await store.update(sid, encode_values({"x": 1}), [], ttl=60, user=None)
    assert await store.load(sid, touch=None) is None
    assert await store.count() == 0


async def test_create_replacing_an_id_deletes_the_old_record(
    store: SessionStore, clock: FakeClock
) -> None:
    old = await saved(store, clock, visitor="data")
    new = new_session_id()
    await store.create(new, record(clock, visitor="data", user="u"), ttl=60, replaces=old)
    assert await store.load(old, touch=None) is None
    assert await store.load(new, touch=None) is not None


async def test_absolute_expiry_is_enforced_on_load_and_update(
    store: SessionStore, clock: FakeClock
) -> None:
    sid = new_session_id()
    await store.create(sid, record(clock, lifetime=100, x=1), ttl=60)
    clock.advance(101)
    assert await store.load(sid, touch=60) is None
    assert not await store.update(sid, encode_values({"x": 2}), [], ttl=60, user=None)


async def test_idle_expiry_and_touch(store: SessionStore, clock: FakeClock) -> None:
    """TTLs are real seconds in Redis, so this one sleeps (about two seconds)."""
    touched, untouched = await saved(store, clock, a=1), await saved(store, clock, b=1)
    for sid in (touched, untouched):
        await store.update(sid, {}, [], ttl=1, user=None)
    await asyncio.sleep(0.6)
    assert await store.load(touched, touch=1) is not None  # pushes its idle expiry
    await asyncio.sleep(0.6)
    assert await store.load(untouched, touch=None) is None
    assert await store.load(touched, touch=None) is not None
    await asyncio.sleep(1.1)
    assert await store.load(touched, touch=None) is None


async def test_delete_user_destroys_every_session_of_that_user_only(
    store: SessionStore, clock: FakeClock
) -> None:
    ann = [new_session_id() for _ in range(3)]
    for sid in ann:
        await store.create(sid, record(clock, user="ann@campus.test"), ttl=60)
    bob = new_session_id()
    await store.create(bob, record(clock, user="bob@campus.test"), ttl=60)
    # A session that becomes Ann's through an update counts as hers too.
    later = await saved(store, clock)
    await store.update(later, encode_values({"user": "ann"}), [], ttl=60, user="ann@campus.test")

    assert await store.delete_user("ann@campus.test") == 4
    for sid in [*ann, later]:
        assert await store.load(sid, touch=None) is None
        assert not await store.update(sid, encode_values({"x": 1}), [], ttl=60, user=None)
    assert await store.load(bob, touch=None) is not None
    assert await store.delete_user("ann@campus.test") == 0


async def test_count(store: SessionStore, clock: FakeClock) -> None:
    for _ in range(5):
        await saved(store, clock)
    await store.create(new_session_id(), record(clock, user="someone"), ttl=60)  # + an index key
    assert await store.count() == 6


async def test_ping(store: SessionStore) -> None:
    await store.ping()


async def test_an_unreachable_redis_raises_store_unavailable_quickly(clock: FakeClock) -> None:
    from tests.conftest import free_port

    store = RedisStore(connect(f"redis://127.0.0.1:{free_port()}/0", timeout=0.5), clock=clock)
    loop = asyncio.get_running_loop()
    started = loop.time()
    for call in (
        store.load(new_session_id(), touch=60),
        store.create(new_session_id(), record(clock), ttl=60),
        store.update(new_session_id(), {}, [], ttl=60, user=None),
        store.delete(new_session_id()),
        store.delete_user("x"),
        store.count(),
        store.ping(),
    ):
        with pytest.raises(StoreUnavailable):
            await call
    assert loop.time() - started < 5
    await store.close()


# --- login-failure counters (Attempt) -----------------------------------------------------

WINDOW = 100


async def fail(store: SessionStore, key: str, times: int = 1, limit: int = 3) -> list[float]:
    return [
        await store.attempt(key, Attempt.FAILURE, window=WINDOW, limit=limit) for _ in range(times)
    ]


async def check(store: SessionStore, key: str, limit: int = 3) -> float:
    return await store.attempt(key, Attempt.CHECK, window=WINDOW, limit=limit)


async def test_failures_below_the_limit_are_not_throttled(store: SessionStore) -> None:
    assert await check(store, "email:ann") == 0.0
    assert await fail(store, "email:ann", 3) == [0.0, 0.0, 0.0]  # each answered normally
    assert await check(store, "email:ann") == pytest.approx(WINDOW, abs=0.5)
    assert await check(store, "email:bob") == 0.0  # keys are independent
    assert await check(store, "email:ann", limit=4) == 0.0  # the limit is the caller's


async def test_the_window_slides(store: SessionStore, clock: FakeClock) -> None:
    for _ in range(3):  # failures at t = 0, 10, 20
        await fail(store, "k")
        clock.advance(10)
    clock.advance(-10)
    assert await check(store, "k") == pytest.approx(80, abs=0.5)  # until t=0's ages out
    clock.advance(80.5)
    assert await check(store, "k") == 0.0  # two left in the window
    assert await fail(store, "k") == [0.0]  # t = 100.5
    assert await check(store, "k") == pytest.approx(10 + WINDOW - 100.5, abs=0.5)
    clock.advance(WINDOW + 1)
    assert await check(store, "k") == 0.0


async def test_a_throttled_key_is_left_alone(store: SessionStore, clock: FakeClock) -> None:
    await fail(store, "k", 3)
    clock.advance(50)
    retry = await check(store, "k")
    assert retry == pytest.approx(50, abs=0.5)
    # Neither a success nor more failures change anything while throttled: nothing about
    # the answer, now or later, may depend on whether the password was right.
    same = pytest.approx(retry, abs=0.5)  # the clock runs on (FakeClock is real time + offset)
    assert await store.attempt("k", Attempt.SUCCESS, window=WINDOW, limit=3) == same
    assert await fail(store, "k", 2) == [same, same]
    clock.advance(51)
    assert await check(store, "k") == 0.0


async def test_success_forgets_the_failures(store: SessionStore) -> None:
    await fail(store, "k", 2)
    assert await store.attempt("k", Attempt.SUCCESS, window=WINDOW, limit=3) == 0.0
    assert await fail(store, "k", 2) == [0.0, 0.0]
    assert await check(store, "k") == 0.0  # two, not four


async def test_concurrent_failures_are_counted_exactly(store: SessionStore) -> None:
    # Connections first: on a Cluster, redis-py 8.1 can fumble twelve handshakes started at
    # once (a driver race, redis-py issue 4287); what this test checks is the counting.
    await check(store, "warm-up")
    results = await asyncio.gather(*(fail(store, "k", limit=5) for _ in range(12)))
    answered = [r for (r,) in results if r == 0.0]
    assert len(answered) == 5  # five got through to a password check; seven were refused
    assert await check(store, "k", limit=5) > 0


@pytest.mark.parametrize("key", ["", "email:" + "x" * 5000, "email:\ud800@\u00e9.test", "addr:::1"])
async def test_any_key_text_works(store: SessionStore, key: str) -> None:
    await fail(store, key, 3)
    assert await check(store, key) > 0
    assert await check(store, key + "!") == 0.0


async def test_an_unreachable_redis_fails_attempts_with_store_unavailable(clock: FakeClock) -> None:
    from tests.conftest import free_port

    store = RedisStore(connect(f"redis://127.0.0.1:{free_port()}/0", timeout=0.5), clock=clock)
    for outcome in Attempt:
        with pytest.raises(StoreUnavailable):
            await store.attempt("k", outcome, window=WINDOW, limit=3)
    await store.close()
