"""The Redis store's read path (campus/session/stores/redis_reads.py): one connection of its
own, pipelined, one deadline per read, replies never handed to the wrong read."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import redis

from campus.session.contract import ContractClock
from campus.session.store import SessionRecord, StoreUnavailable, new_session_id
from campus.session.stores.redis import RedisStore, connect
from tests.support.servers import RedisServer

pytestmark = pytest.mark.gen_test(timeout=30)


async def sessions(store: RedisStore, clock: ContractClock, count: int) -> list[str]:
    """*count* sessions whose data says which they are: {"n": "<index>"}."""
    ids = [new_session_id() for _ in range(count)]
    for i, sid in enumerate(ids):
        await store.create(sid, SessionRecord({"n": str(i)}, int(clock()) + 600, None), ttl=600)
    return ids


async def numbers(store: RedisStore, ids: list[str]) -> list[str | None]:
    records = await asyncio.gather(*(store.load(sid, touch=600) for sid in ids))
    return [r.data["n"] if r else None for r in records]


def connections(client: redis.Redis) -> int:
    return len(client.client_list()) - 1  # not the test's own


@pytest.fixture
def store(redis_server: RedisServer, redis_db: redis.Redis, clock: ContractClock) -> RedisStore:
    return RedisStore(connect(redis_server.url, timeout=0.5), clock=clock)


async def test_reads_share_one_connection_however_many_run_at_once(
    store: RedisStore, redis_db: redis.Redis, clock: ContractClock
) -> None:
    ids = await sessions(store, clock, 50)
    pooled = connections(redis_db)  # what the writes left in the pool
    assert await numbers(store, ids) == [str(i) for i in range(50)]
    assert connections(redis_db) == pooled + 1
    assert await numbers(store, ids[::-1]) == [str(i) for i in range(49, -1, -1)]
    assert connections(redis_db) == pooled + 1
    await store.close()


async def test_a_stalled_redis_fails_every_read_in_one_timeout_then_reads_work_again(
    store: RedisStore, redis_db: redis.Redis, clock: ContractClock
) -> None:
    """CLIENT PAUSE holds GETEX (a write: it pushes the expiry) past the deadline. The
    replies that come after it must not reach the reads that follow."""
    ids = await sessions(store, clock, 6)
    assert await numbers(store, ids) == [str(i) for i in range(6)]
    redis_db.client_pause(1500, all=False)  # WRITE: our GETEXs wait, CLIENT UNPAUSE does not
    loop = asyncio.get_running_loop()
    started = loop.time()
    stalled = await asyncio.gather(
        *(store.load(sid, touch=600) for sid in ids[:3]), return_exceptions=True
    )
    assert loop.time() - started < 1.0  # one deadline (0.5 s) for all three, not three
    assert all(isinstance(r, StoreUnavailable) for r in stalled), stalled
    assert "no answer within 0.5s" in str(stalled[0])
    redis_db.client_unpause()
    assert await numbers(store, ids[3:] + ids[:3]) == ["3", "4", "5", "0", "1", "2"]
    await store.close()


async def test_a_cancelled_read_does_not_shift_the_replies_of_the_others(
    store: RedisStore, clock: ContractClock
) -> None:
    ids = await sessions(store, clock, 3)
    await numbers(store, ids)  # the read connection is open
    reads = [asyncio.ensure_future(store.load(sid, touch=600)) for sid in ids]
    await asyncio.sleep(0)
    await asyncio.sleep(0)  # written, replies on their way
    reads[1].cancel()
    first, third = await reads[0], await reads[2]
    assert reads[1].cancelled()
    assert first is not None and first.data == {"n": "0"}
    assert third is not None and third.data == {"n": "2"}
    assert await numbers(store, ids) == ["0", "1", "2"]
    await store.close()


async def test_a_redis_restart_between_reads_costs_no_read_an_error(
    tmp_path: Path, clock: ContractClock
) -> None:
    """The read connection is dead after the restart; the reads sent on it go once more."""
    server = RedisServer(tmp_path, "--appendonly", "yes", "--appendfsync", "always")
    server.start()
    store = RedisStore(connect(server.url, timeout=1.0), clock=clock)
    try:
        ids = await sessions(store, clock, 10)
        assert await numbers(store, ids) == [str(i) for i in range(10)]
        server.stop()
        server.start()
        assert await numbers(store, ids) == [str(i) for i in range(10)]
    finally:
        await store.close()
        server.stop()


async def test_reads_waiting_when_the_store_closes_fail_and_so_do_later_ones(
    store: RedisStore, redis_db: redis.Redis, clock: ContractClock
) -> None:
    ids = await sessions(store, clock, 2)
    await numbers(store, ids)
    redis_db.client_pause(1000, all=False)
    try:
        waiting = asyncio.ensure_future(store.load(ids[0], touch=600))
        deadline = asyncio.get_running_loop().time() + 5
        while redis_db.info("clients")["blocked_clients"] == 0:  # sent, held by the pause
            assert asyncio.get_running_loop().time() < deadline, "the read was never sent"
            await asyncio.sleep(0.005)
        await store.close()
        with pytest.raises(StoreUnavailable, match="closed"):
            await waiting
        with pytest.raises(StoreUnavailable, match="closed"):
            await store.load(ids[1], touch=600)
    finally:
        redis_db.client_unpause()


async def test_reads_to_a_server_that_never_answers_each_fail_in_one_timeout(
    black_hole: int, clock: ContractClock
) -> None:
    store = RedisStore(connect(f"redis://127.0.0.1:{black_hole}/0", timeout=0.3), clock=clock)
    loop = asyncio.get_running_loop()
    for _ in range(2):  # the second round makes a new connection, and waits no longer
        started = loop.time()
        results = await asyncio.gather(
            *(store.load(new_session_id(), touch=60) for _ in range(5)), return_exceptions=True
        )
        assert loop.time() - started < 0.9
        assert all(isinstance(r, StoreUnavailable) for r in results), results
    await store.close()
