"""What only one store promises: the memory store's bound, Redis's hashed keys and costs."""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path

import pytest
import redis

from campus.session.store import (
    Attempt,
    SessionRecord,
    StoreUnavailable,
    encode_values,
    new_session_id,
)
from campus.session.stores.memory import MemoryStore
from campus.session.stores.redis import RedisStore, connect
from tests.conftest import FakeClock, RedisServer

pytestmark = pytest.mark.gen_test


def record(clock: FakeClock, user: str | None = None) -> SessionRecord:
    return SessionRecord(encode_values({"user": {"email": user}}), int(clock()) + 3600, user)


# -- memory -------------------------------------------------------------------------------


async def test_memory_store_is_bounded_and_evicts_the_least_recently_used(clock: FakeClock) -> None:
    store = MemoryStore(max_sessions=100, clock=clock)
    first = new_session_id()
    await store.create(first, record(clock), ttl=60)
    ids = [new_session_id() for _ in range(99)]
    for sid in ids:
        await store.create(sid, record(clock), ttl=60)
    assert await store.load(first, touch=60) is not None  # now the most recently used
    for _ in range(50):
        await store.create(new_session_id(), record(clock), ttl=60)
    assert len(store) == 100
    assert await store.load(first, touch=None) is not None
    assert all([await store.load(sid, touch=None) is None for sid in ids[:50]])
    assert await store.load(ids[50], touch=None) is not None


async def test_memory_store_never_returns_expired_records_and_sweeps_them(clock: FakeClock) -> None:
    store = MemoryStore(max_sessions=1000, clock=clock)
    old = [new_session_id() for _ in range(10)]
    for sid in old:
        await store.create(sid, record(clock), ttl=60)
    clock.advance(30)
    fresh = new_session_id()
    await store.create(fresh, record(clock), ttl=60)
    clock.advance(31)
    assert await store.load(old[0], touch=60) is None
    assert store.sweep() == 9
    assert len(store) == 1 and await store.load(fresh, touch=None) is not None


async def test_memory_store_keeps_json_text_like_a_remote_store(clock: FakeClock) -> None:
    store = MemoryStore(max_sessions=10, clock=clock)
    sid = new_session_id()
    data = {"cart": [1, 2]}
    await store.create(sid, SessionRecord(encode_values(data), int(clock()) + 60, None), ttl=60)
    data["cart"].append(3)  # the caller's objects are not the stored ones
    loaded = await store.load(sid, touch=None)
    assert loaded is not None and loaded.decoded() == {"cart": [1, 2]}
    assert all(isinstance(text, str) for text in store._entries[sid].data.values())


# -- redis --------------------------------------------------------------------------------


@pytest.fixture
def redis_store(redis_server: RedisServer, redis_db: redis.Redis, clock: FakeClock) -> RedisStore:
    return RedisStore(connect(redis_server.url, timeout=1.0), prefix="campus:", clock=clock)


async def test_redis_keys_are_prefixed_hashes_and_no_raw_id_is_stored(
    redis_store: RedisStore, redis_db: redis.Redis, clock: FakeClock
) -> None:
    sid = new_session_id()
    await redis_store.create(sid, record(clock, "ann@campus.test"), ttl=60)
    await redis_store.update(sid, encode_values({"x": 1}), [], ttl=60, user="ann@campus.test")
    expected = "campus:" + hashlib.sha256(sid.encode()).hexdigest()
    keys = sorted(k.decode() for k in redis_db.keys("*"))
    user_index = "campus:user:" + hashlib.sha256(b"ann@campus.test").hexdigest()
    assert keys == sorted([expected, user_index])
    dump = b"".join(redis_db.dump(k) or b"" for k in keys) + str(keys).encode()
    assert sid.encode() not in dump


async def test_redis_ttl_is_the_idle_timeout_and_a_read_pushes_it(
    redis_store: RedisStore, redis_db: redis.Redis, clock: FakeClock
) -> None:
    sid = new_session_id()
    await redis_store.create(sid, record(clock), ttl=100)
    assert 99_000 < redis_db.pttl(redis_store.key(sid)) <= 100_000
    await redis_store.load(sid, touch=1800)
    assert 1_799_000 < redis_db.pttl(redis_store.key(sid)) <= 1_800_000
    await redis_store.load(sid, touch=None)  # rolling off: a read leaves the TTL alone
    assert redis_db.pttl(redis_store.key(sid)) <= 1_800_000


def command_calls(client: redis.Redis) -> dict[str, int]:
    stats = client.info("commandstats")
    return {
        name.removeprefix("cmdstat_"): value["calls"]
        for name, value in stats.items()
        if not name.startswith(("cmdstat_info", "cmdstat_config"))
    }


async def test_a_read_costs_exactly_one_redis_command(
    redis_store: RedisStore, redis_db: redis.Redis, clock: FakeClock
) -> None:
    sid = new_session_id()
    await redis_store.create(sid, record(clock), ttl=60)
    redis_db.config_resetstat()
    assert await redis_store.load(sid, touch=60) is not None
    assert command_calls(redis_db) == {"getex": 1}


async def test_a_write_is_one_script_call(
    redis_store: RedisStore, redis_db: redis.Redis, clock: FakeClock
) -> None:
    sid = new_session_id()
    await redis_store.create(sid, record(clock), ttl=60)
    redis_db.config_resetstat()
    assert await redis_store.update(sid, encode_values({"x": 1}), [], ttl=60, user=None)
    calls = command_calls(redis_db)
    # One round trip from us; inside the script Redis counts the GET and SET it runs.
    assert calls.pop("evalsha") == 1
    assert calls == {"get": 1, "set": 1}


async def test_redis_store_recovers_after_a_restart(tmp_path: Path, clock: FakeClock) -> None:
    server = RedisServer(tmp_path)
    server.start()
    store = RedisStore(connect(server.url, timeout=0.5), clock=clock)
    sid = new_session_id()
    await store.create(sid, record(clock), ttl=60)
    server.stop()
    with pytest.raises(StoreUnavailable):
        await store.load(sid, touch=60)
    server.start()  # same port, empty (no persistence): the pool must reconnect by itself
    assert await store.load(sid, touch=60) is None
    await store.create(sid, record(clock), ttl=60)
    assert await store.load(sid, touch=60) is not None
    await store.close()
    server.stop()


async def test_a_corrupt_redis_record_loads_as_none(
    redis_store: RedisStore, redis_db: redis.Redis, clock: FakeClock
) -> None:
    sid = new_session_id()
    await redis_store.create(sid, record(clock), ttl=60)
    for garbage in (b"\x00not json", b"[]", b'{"data": {"a": 1}, "expires": 1}'):
        redis_db.set(redis_store.key(sid), garbage)
        assert await redis_store.load(sid, touch=60) is None


# -- login-failure counters ---------------------------------------------------------------


async def test_memory_failure_counters_are_bounded(clock: FakeClock) -> None:
    """An attacker spraying emails or addresses cannot grow the process without limit."""
    store = MemoryStore(max_sessions=1000, max_counters=50, clock=clock)
    for i in range(500):
        await store.attempt(f"email:{i}@spray.test", Attempt.FAILURE, window=60, limit=5)
    assert len(store._failures) == 50
    # the most recently failed survive, the coldest went first
    assert await store.attempt("email:499@spray.test", Attempt.CHECK, window=60, limit=1) > 0
    assert await store.attempt("email:0@spray.test", Attempt.CHECK, window=60, limit=1) == 0
    # each key keeps at most `limit` times, however long it is hammered or however long it is
    for _ in range(100):
        await store.attempt("x" * 10_000, Attempt.FAILURE, window=60, limit=5)
    assert max(len(times) for times in store._failures.values()) == 5
    assert all(len(digest) == 32 for digest in store._failures)


async def test_memory_failure_counters_expire(clock: FakeClock) -> None:
    store = MemoryStore(max_sessions=1000, clock=clock)
    for i in range(20):
        await store.attempt(f"addr:{i}", Attempt.FAILURE, window=60, limit=5)
    assert await store.attempt("addr:0", Attempt.CHECK, window=60, limit=5) == 0
    assert len(store._failures) == 20  # a check does not drop a live counter
    clock.advance(61)
    await store.attempt("addr:new", Attempt.FAILURE, window=60, limit=5)
    assert len(store._failures) < 20  # a write sweeps expired counters off the cold end
    for i in range(20):  # a check of an expired counter drops it
        await store.attempt(f"addr:{i}", Attempt.CHECK, window=60, limit=5)
    assert list(store._failures) == [hashlib.sha256(b"addr:new").digest()]


async def test_redis_failure_counters_are_hashed_bounded_and_expire(
    redis_store: RedisStore, redis_db: redis.Redis
) -> None:
    email = "email:ann@campus.test"
    for _ in range(12):
        await redis_store.attempt(email, Attempt.FAILURE, window=900, limit=5)
    (key,) = redis_db.keys("*")
    assert key.decode() == "campus:login:" + hashlib.sha256(email.encode()).hexdigest()
    assert redis_store.failure_key(email) == key.decode()
    assert redis_db.zcard(key) == 5
    assert 899_000 < redis_db.pttl(key) <= 900_000
    assert b"ann" not in redis_db.dump(key) + key  # neither the key nor the members name her
    await redis_store.attempt("addr:1.2.3.4", Attempt.CHECK, window=900, limit=5)
    assert redis_db.keys("*") == [key]  # a check of a clean key writes nothing
    assert await redis_store.count() == 0  # counters are not sessions


async def test_a_throttling_check_is_one_redis_command(
    redis_store: RedisStore, redis_db: redis.Redis
) -> None:
    await redis_store.attempt("k", Attempt.FAILURE, window=900, limit=5)  # loads the script
    for outcome in Attempt:
        redis_db.config_resetstat()
        await redis_store.attempt("k", outcome, window=900, limit=5)
        calls = command_calls(redis_db)
        assert calls.pop("evalsha") == 1, outcome  # the rest runs inside the script
        assert not {"script", "eval", "multi", "exec"} & set(calls), outcome


# -- reads batched per event-loop turn ------------------------------------------------------


async def test_concurrent_reads_share_a_round_trip_but_stay_one_command_each(
    redis_store: RedisStore, redis_db: redis.Redis, clock: FakeClock
) -> None:
    ids = [new_session_id() for _ in range(20)]
    for i, sid in enumerate(ids):
        await redis_store.create(sid, SessionRecord({"n": str(i)}, int(clock()) + 60, None), ttl=60)
    redis_db.config_resetstat()
    records = await asyncio.gather(*(redis_store.load(sid, touch=60) for sid in ids))
    assert [r.data if r else None for r in records] == [{"n": str(i)} for i in range(20)]
    assert command_calls(redis_db) == {"getex": 20}


async def test_one_bad_reply_in_a_batch_fails_only_its_own_read(
    redis_store: RedisStore, redis_db: redis.Redis, clock: FakeClock
) -> None:
    good = new_session_id()
    await redis_store.create(good, record(clock), ttl=60)
    bad = new_session_id()
    redis_db.sadd(redis_store.key(bad), "not a string")  # GETEX on a set: WRONGTYPE
    results = await asyncio.gather(
        redis_store.load(good, touch=60), redis_store.load(bad, touch=60), return_exceptions=True
    )
    assert isinstance(results[0], SessionRecord)
    assert isinstance(results[1], StoreUnavailable)


async def test_a_batch_on_a_dead_connection_fails_every_read(clock: FakeClock) -> None:
    from tests.conftest import free_port

    store = RedisStore(connect(f"redis://127.0.0.1:{free_port()}/0", timeout=0.5), clock=clock)
    results = await asyncio.gather(
        *(store.load(new_session_id(), touch=60) for _ in range(5)), return_exceptions=True
    )
    assert all(isinstance(r, StoreUnavailable) for r in results)
    await store.close()
