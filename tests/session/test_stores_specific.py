"""What only one store promises: the memory store's bound, Redis's hashed keys and costs."""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path

import pytest
import redis

from campus.session.contract import ContractClock
from campus.session.store import (
    MAX_LISTED,
    SessionRecord,
    StoreUnavailable,
    encode_values,
    new_session_id,
    session_ref,
)
from campus.session.stores.memory import MemoryStore
from campus.session.stores.redis import RedisStore, connect
from tests.support.servers import RedisServer, redis_keys

pytestmark = pytest.mark.gen_test


def record(clock: ContractClock, user: str | None = None, lifetime: int = 3600) -> SessionRecord:
    return SessionRecord(encode_values({"user": {"email": user}}), int(clock()) + lifetime, user)


# -- memory -------------------------------------------------------------------------------


async def test_memory_store_is_bounded_and_evicts_the_least_recently_used(
    clock: ContractClock,
) -> None:
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


async def test_memory_store_never_returns_expired_records_and_sweeps_them(
    clock: ContractClock,
) -> None:
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


async def test_memory_store_keeps_json_text_like_a_remote_store(clock: ContractClock) -> None:
    store = MemoryStore(max_sessions=10, clock=clock)
    sid = new_session_id()
    data = {"cart": [1, 2]}
    await store.create(sid, SessionRecord(encode_values(data), int(clock()) + 60, None), ttl=60)
    data["cart"].append(3)  # the caller's objects are not the stored ones
    loaded = await store.load(sid, touch=None)
    assert loaded is not None and loaded.decoded() == {"cart": [1, 2]}
    assert all(isinstance(text, str) for _, text in store._entries[sid].data)


# -- redis --------------------------------------------------------------------------------


@pytest.fixture
def redis_store(
    redis_server: RedisServer, redis_db: redis.Redis, clock: ContractClock
) -> RedisStore:
    return RedisStore(connect(redis_server.url, timeout=1.0), prefix="campus:", clock=clock)


async def test_redis_keys_are_prefixed_hashes_and_no_raw_id_is_stored(
    redis_store: RedisStore, redis_db: redis.Redis, clock: ContractClock
) -> None:
    sid = new_session_id()
    await redis_store.create(sid, record(clock, "ann@campus.test"), ttl=60)
    await redis_store.update(sid, encode_values({"x": 1}), [], ttl=60, user="ann@campus.test")
    expected = "campus:" + hashlib.sha256(sid.encode()).hexdigest()
    keys = sorted(k.decode() for k in redis_keys(redis_db))
    user_index = "campus:sessions:" + hashlib.sha256(b"ann@campus.test").hexdigest()
    assert keys == sorted([expected, user_index])
    dump = b"".join(redis_db.dump(k) or b"" for k in keys) + str(keys).encode()
    assert sid.encode() not in dump


async def test_redis_ttl_is_the_idle_timeout_and_a_read_pushes_it(
    redis_store: RedisStore, redis_db: redis.Redis, clock: ContractClock
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
    redis_store: RedisStore, redis_db: redis.Redis, clock: ContractClock
) -> None:
    sid = new_session_id()
    await redis_store.create(sid, record(clock), ttl=60)
    await redis_store.load(sid, touch=60)  # reads have a connection of their own: opened now
    redis_db.config_resetstat()
    assert await redis_store.load(sid, touch=60) is not None
    assert command_calls(redis_db) == {"getex": 1}


async def test_a_write_is_one_script_call(
    redis_store: RedisStore, redis_db: redis.Redis, clock: ContractClock
) -> None:
    sid = new_session_id()
    await redis_store.create(sid, record(clock), ttl=60)
    redis_db.config_resetstat()
    assert await redis_store.update(sid, encode_values({"x": 1}), [], ttl=60, user=None)
    calls = command_calls(redis_db)
    # One round trip from us; inside the script Redis counts the GET and SET it runs.
    assert calls.pop("evalsha") == 1
    assert calls == {"get": 1, "set": 1}


async def test_redis_store_recovers_after_a_restart(tmp_path: Path, clock: ContractClock) -> None:
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
    redis_store: RedisStore, redis_db: redis.Redis, clock: ContractClock
) -> None:
    sid = new_session_id()
    await redis_store.create(sid, record(clock), ttl=60)
    for garbage in (
        b"\x00not json",
        b"[]",
        b'{"data": {"a": 1}, "expires": 1}',
        b'{"data": {}, "expires": Infinity}',  # json.loads takes these; int() does not
        b'{"data": {}, "expires": NaN}',
        b'{"data": {}, "expires": 1e999}',
        b'{"data": {}, "expires": true}',
    ):
        redis_db.set(redis_store.key(sid), garbage)
        assert await redis_store.load(sid, touch=60) is None


# -- login-attempt counters ---------------------------------------------------------------


async def test_memory_attempt_counters_are_bounded(clock: ContractClock) -> None:
    """An attacker spraying emails or addresses cannot grow the process without limit."""
    store = MemoryStore(max_sessions=1000, max_counters=50, clock=clock)
    for i in range(500):
        await store.reserve([f"email:{i}@spray.test"], "a", window=60, limit=5)
    assert len(store._attempts) == 50
    # the most recently counted survive, the coldest went first
    assert await store.reserve(["email:499@spray.test"], "b", window=60, limit=1) > 0
    assert await store.reserve(["email:0@spray.test"], "b", window=60, limit=1) == 0
    # each key keeps at most `limit` attempts, however long it is hammered or however long it is
    for _ in range(100):
        await store.reserve(["x" * 10_000], "c", window=60, limit=5)
    assert max(len(attempts) for attempts in store._attempts.values()) == 5
    assert all(len(digest) == 32 for digest in store._attempts)


async def test_memory_attempt_counters_expire(clock: ContractClock) -> None:
    store = MemoryStore(max_sessions=1000, clock=clock)
    for i in range(20):
        await store.reserve([f"addr:{i}"], "a", window=60, limit=5)
    clock.advance(61)
    await store.reserve(["addr:new"], "a", window=60, limit=5)
    assert len(store._attempts) < 20  # a write sweeps expired counters off the cold end
    for i in range(20):  # a reservation starts an expired counter afresh
        assert await store.reserve([f"addr:{i}"], "b", window=60, limit=1) == 0.0
    assert all(len(attempts) == 1 for attempts in store._attempts.values())


async def test_redis_attempt_counters_are_hashed_bounded_and_expire(
    redis_store: RedisStore, redis_db: redis.Redis
) -> None:
    email = "email:ann@campus.test"
    for i in range(12):
        await redis_store.reserve([email], f"attempt-{i}", window=900, limit=5)
    (key,) = redis_keys(redis_db)
    assert key.decode() == "campus:login:" + hashlib.sha256(email.encode()).hexdigest()
    assert redis_store.attempt_key(email) == key.decode()
    assert redis_db.zcard(key) == 5
    assert 899_000 < redis_db.pttl(key) <= 900_000
    dumped = redis_db.dump(key)
    assert dumped is not None
    assert b"ann" not in dumped + key  # neither the key nor the members name her
    assert await redis_store.reserve(["addr:1.2.3.4", email], "x", window=900, limit=5) > 0
    assert redis_db.keys("*") == [key]  # a refused reservation writes nothing
    assert await redis_store.count() == 0  # counters are not sessions


async def test_reserving_and_giving_back_are_one_redis_command_each(
    redis_store: RedisStore, redis_db: redis.Redis
) -> None:
    keys = ["addr:1.2.3.4", "email:ann@campus.test"]
    await redis_store.reserve(keys, "warm", window=900, limit=5)  # loads the scripts
    await redis_store.give_back("warm", keys[:1], forget=keys[1:])
    for step in ("reserve", "give_back"):
        redis_db.config_resetstat()
        if step == "reserve":
            assert await redis_store.reserve(keys, "a", window=900, limit=5) == 0.0
        else:
            await redis_store.give_back("a", keys[:1], forget=keys[1:])
        calls = command_calls(redis_db)
        assert calls.pop("evalsha") == 1, step  # the rest runs inside the script
        assert not {"script", "eval", "multi", "exec"} & set(calls), step


async def test_an_unreachable_redis_raises_store_unavailable_quickly(clock: ContractClock) -> None:
    from tests.support.servers import free_port

    store = RedisStore(connect(f"redis://127.0.0.1:{free_port()}/0", timeout=0.5), clock=clock)
    loop = asyncio.get_running_loop()
    started = loop.time()
    for call in (
        store.load(new_session_id(), touch=60),
        store.create(new_session_id(), record(clock), ttl=60),
        store.update(new_session_id(), {}, [], ttl=60, user=None),
        store.delete(new_session_id()),
        store.delete_user("x"),
        store.sessions_of("x"),
        store.end_sessions("x", ["0" * 64]),
        store.count(),
        store.ping(),
        store.reserve(["k"], "a", window=60, limit=3),
        store.give_back("a", ["k"], forget=["j"]),
    ):
        with pytest.raises(StoreUnavailable):
            await call
    assert loop.time() - started < 8
    await store.close()


# -- the user index ------------------------------------------------------------------------


async def test_the_user_index_drops_ended_sessions(
    redis_store: RedisStore, redis_db: redis.Redis, clock: ContractClock
) -> None:
    """20 logins and logouts used to leave 20 members and an index living 8 hours."""
    ann = "ann@campus.test"
    index = redis_store.user_key(ann)
    for _ in range(20):
        sid = new_session_id()
        anonymous = new_session_id()
        await redis_store.create(anonymous, SessionRecord({}, int(clock()) + 28800), ttl=1800)
        await redis_store.create(sid, record(clock, ann), ttl=1800, replaces=anonymous)  # login
        assert redis_db.zcard(index) == 1
        await redis_store.delete(sid)  # logout
    assert redis_db.exists(index) == 0
    assert redis_db.keys("*") == []


async def test_the_user_index_lives_as_long_as_its_longest_session(
    redis_store: RedisStore, redis_db: redis.Redis, clock: ContractClock
) -> None:
    ann = "ann@campus.test"
    index = redis_store.user_key(ann)
    short, long = new_session_id(), new_session_id()
    await redis_store.create(long, SessionRecord({}, int(clock()) + 7200, ann), ttl=1800)
    await redis_store.create(short, SessionRecord({}, int(clock()) + 3600, ann), ttl=1800)
    assert 7_190_000 < redis_db.pttl(index) <= 7_200_000  # not pushed by the shorter one
    await redis_store.delete(long)
    assert 3_590_000 < redis_db.pttl(index) <= 3_600_000  # shrinks to the longest left
    # a login drops members past their absolute deadline, and so does a listing
    clock.advance(3601)
    await redis_store.create(new_session_id(), SessionRecord({}, int(clock()) + 60, ann), ttl=60)
    assert redis_db.zcard(index) == 1


async def test_listing_and_logins_drop_sessions_that_idled_out(
    redis_store: RedisStore, redis_db: redis.Redis, clock: ContractClock
) -> None:
    ann = "ann@campus.test"
    index = redis_store.user_key(ann)
    kept, idle, other = new_session_id(), new_session_id(), new_session_id()
    for sid in (kept, idle, other):
        await redis_store.create(sid, record(clock, ann), ttl=60)
    redis_db.delete(redis_store.key(idle))  # as if its idle TTL ran out
    assert redis_db.zcard(index) == 3
    listed = await redis_store.sessions_of(ann)
    assert {s.ref for s in listed} == {redis_store.key(s)[len("campus:") :] for s in (kept, other)}
    assert redis_db.zcard(index) == 2
    # a login that replaces one of her sessions (signing in again) drops the replaced one
    await redis_store.create(new_session_id(), record(clock, ann), ttl=60, replaces=other)
    assert redis_db.zcard(index) == 2


async def test_revocation_also_reaches_sessions_in_the_old_index(
    redis_store: RedisStore, redis_db: redis.Redis, clock: ContractClock
) -> None:
    """Indexes written before the upgrade (plain sets under "user:") are still revoked."""
    ann = "ann@campus.test"
    old = new_session_id()
    await redis_store.create(old, record(clock), ttl=60)
    legacy = "campus:user:" + hashlib.sha256(ann.encode()).hexdigest()
    redis_db.sadd(legacy, redis_store.key(old)[len("campus:") :])
    new = new_session_id()
    await redis_store.create(new, record(clock, ann), ttl=60)
    assert await redis_store.delete_user(ann) == 2
    assert redis_db.keys("*") == []


# -- reads batched per event-loop turn ------------------------------------------------------


async def test_concurrent_reads_share_a_round_trip_but_stay_one_command_each(
    redis_store: RedisStore, redis_db: redis.Redis, clock: ContractClock
) -> None:
    ids = [new_session_id() for _ in range(20)]
    for i, sid in enumerate(ids):
        await redis_store.create(sid, SessionRecord({"n": str(i)}, int(clock()) + 60, None), ttl=60)
    await redis_store.load(ids[0], touch=60)  # opens the read connection (HELLO, PING)
    redis_db.config_resetstat()
    records = await asyncio.gather(*(redis_store.load(sid, touch=60) for sid in ids))
    assert [r.data if r else None for r in records] == [{"n": str(i)} for i in range(20)]
    assert command_calls(redis_db) == {"getex": 20}


async def test_one_bad_reply_in_a_batch_fails_only_its_own_read(
    redis_store: RedisStore, redis_db: redis.Redis, clock: ContractClock
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


async def test_a_batch_on_a_dead_connection_fails_every_read(clock: ContractClock) -> None:
    from tests.support.servers import free_port

    store = RedisStore(connect(f"redis://127.0.0.1:{free_port()}/0", timeout=0.5), clock=clock)
    results = await asyncio.gather(
        *(store.load(new_session_id(), touch=60) for _ in range(5)), return_exceptions=True
    )
    assert all(isinstance(r, StoreUnavailable) for r in results)
    await store.close()


@pytest.mark.slow
@pytest.mark.gen_test(timeout=60)  # thousands of commands: seconds on a busy machine
async def test_thousands_of_sessions_can_be_listed_and_ended(
    redis_store: RedisStore, redis_db: redis.Redis, clock: ContractClock
) -> None:
    """Logins are not throttled when they succeed: one account may pile up thousands of
    sessions. Listing them stays bounded (the newest MAX_LISTED); ending them all works."""
    ann = "ann@campus.test"
    sids = [new_session_id() for _ in range(2500)]
    for i, start in enumerate(range(0, len(sids), 50)):
        batch = sids[start : start + 50]
        lifetime = 3600 + i  # later batches signed in later
        await asyncio.gather(
            *(redis_store.create(s, record(clock, ann, lifetime), ttl=60) for s in batch)
        )
    listed = await redis_store.sessions_of(ann)
    assert len(listed) == MAX_LISTED
    newest = {redis_store.key(sid)[len("campus:") :] for sid in sids[-MAX_LISTED:]}
    assert {s.ref for s in listed} == newest
    refs = [redis_store.key(sid)[len("campus:") :] for sid in sids]
    assert await redis_store.end_sessions(ann, refs) == 2500  # the index drops them in slices
    assert redis_db.keys("*") == []


async def test_memory_user_index_follows_eviction_expiry_and_replacement(
    clock: ContractClock,
) -> None:
    store = MemoryStore(max_sessions=5, clock=clock)
    ann = "ann@campus.test"
    sids = [new_session_id() for _ in range(8)]
    for sid in sids:
        await store.create(sid, record(clock, ann), ttl=60)
    assert len(await store.sessions_of(ann)) == 5  # three evicted, and gone from her index
    assert store._by_user[ann] == set(sids[3:])
    await store.create(new_session_id(), record(clock, "bob@campus.test"), ttl=60, replaces=sids[3])
    assert sids[3] not in store._by_user[ann]
    clock.advance(61)
    assert store.sweep() == 5
    assert store._by_user == {}
    assert await store.sessions_of(ann) == []


async def test_memory_user_index_from_one_session_to_several_and_back(clock: ContractClock) -> None:
    """One session: the index holds its id alone (no set); a second makes it a set; back to
    one and to none, every listing and revocation sees exactly the live sessions."""
    store = MemoryStore(max_sessions=100, clock=clock)
    ann = "ann@campus.test"
    first, second, third = new_session_id(), new_session_id(), new_session_id()
    await store.create(first, record(clock, ann), ttl=60)
    assert store._by_user[ann] == first
    await store.create(first, record(clock, ann), ttl=60)  # saved again: still one
    assert store._by_user[ann] == first
    await store.create(second, record(clock, ann), ttl=60)
    assert store._by_user[ann] == {first, second}
    await store.delete(first)
    assert store._by_user[ann] == second
    assert [s.ref for s in await store.sessions_of(ann)] == [session_ref(second)]
    await store.create(third, record(clock, ann), ttl=60, replaces=second)
    assert store._by_user[ann] == third
    assert await store.end_sessions(ann, [session_ref(third)]) == 1
    assert store._by_user == {}
    await store.create(first, record(clock, ann), ttl=60)
    await store.create(second, record(clock, ann), ttl=60)
    assert await store.delete_user(ann) == 2
    assert store._by_user == {} and len(store) == 0


# Not on a Cluster: redis-py's async Cluster client breaks under such a burst whatever the
# store does ("'NoneType' object has no attribute 'writelines'" even 16 at a time);
# docs/stores.md says so.
@pytest.mark.slow
@pytest.mark.gen_test(timeout=60)  # hundreds of writes: seconds on a busy machine
@pytest.mark.parametrize("topology", ["single", "sentinel"])
async def test_more_concurrent_writes_than_pooled_connections_wait_instead_of_failing(
    request: pytest.FixtureRequest, topology: str, clock: ContractClock
) -> None:
    # redis-py's pools refuse a connection past 100 at once ("Too many connections"): under a
    # burst of logins that failed logouts and left their sessions alive. They queue instead.
    fixture = {"single": "redis_server", "sentinel": "redis_sentinel"}
    url = request.getfixturevalue(fixture[topology]).url
    store = RedisStore(connect(url, timeout=2.0), prefix=f"burst-{topology}:", clock=clock)
    sids = [new_session_id() for _ in range(400)]
    try:
        await asyncio.gather(
            *(store.create(sid, record(clock, "ann@campus.test"), ttl=60) for sid in sids)
        )
        await asyncio.gather(*(store.delete(sid) for sid in sids))
        assert all([await store.load(sid, touch=None) is None for sid in sids[:20]])
    finally:
        await store.close()


def test_a_memory_store_built_without_arguments_is_bounded() -> None:
    """docs/session-library.md builds it as ``MemoryStore()``: never an unbounded dict."""
    assert MemoryStore().max_sessions == 100_000
