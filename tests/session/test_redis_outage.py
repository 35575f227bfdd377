"""The Redis store through outages: a dead server, a hung one, a restart with and without data.

Each test runs its own redis-server (never the suite's shared one), so it can kill it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from campus.session.contract import ContractClock
from campus.session.store import SessionRecord, StoreUnavailable, encode_values, new_session_id
from campus.session.stores.redis import RedisStore, connect
from tests.support.redis_topologies import Cluster
from tests.support.servers import PERSISTENT, RedisServer, free_port

pytestmark = pytest.mark.gen_test(timeout=30)  # some tests start and kill redis-servers

#: Append-only file, fsync'ed on every write: a SIGKILL loses nothing.


def record(clock: ContractClock, user: str | None = None) -> SessionRecord:
    data = encode_values({"user": {"email": "ann@campus.test"}})
    return SessionRecord(data, int(clock()) + 60, user)


@pytest.mark.slow
async def test_a_server_that_never_answers_costs_one_timeout_not_several(
    black_hole: int, clock: ContractClock
) -> None:
    """Without a deadline per operation this took four socket timeouts (handshake + retry)."""
    store = RedisStore(connect(f"redis://127.0.0.1:{black_hole}/0", timeout=0.5), clock=clock)
    loop = asyncio.get_running_loop()
    for operation in (
        store.load(new_session_id(), touch=60),
        store.update(new_session_id(), {}, [], ttl=60, user=None),
        store.ping(),
        store.count(),
    ):
        started = loop.time()
        with pytest.raises(StoreUnavailable, match=r"no answer within 0\.5s"):
            await operation
        assert loop.time() - started < 1.5  # 0.5 s, generously bounded
    await store.close()


async def test_a_pool_of_stale_connections_recovers_on_the_first_request(
    tmp_path: Path, clock: ContractClock
) -> None:
    """Every pooled connection dies with the server; each must be replaced, none reported."""
    server = RedisServer(tmp_path, *PERSISTENT)
    server.start()
    store = RedisStore(connect(server.url, timeout=1.0), clock=clock)
    try:
        ids = [new_session_id() for _ in range(10)]
        await asyncio.gather(*(store.create(sid, record(clock), ttl=60) for sid in ids))
        loaded = await asyncio.gather(*(store.load(sid, touch=60) for sid in ids))
        assert all(loaded)  # the ten concurrent writes left ten connections in the pool
        server.stop()
        server.start()  # same port, data back from the append-only file
        loaded = await asyncio.gather(*(store.load(sid, touch=60) for sid in ids))
        assert all(loaded)
    finally:
        await store.close()
        server.stop()


async def test_killed_with_persistence_on_sessions_survive(
    tmp_path: Path, clock: ContractClock
) -> None:
    server = RedisServer(tmp_path, *PERSISTENT)
    server.start()
    store = RedisStore(connect(server.url, timeout=1.0), clock=clock)
    try:
        sid = new_session_id()
        await store.create(sid, record(clock), ttl=60)
        server.kill()
        with pytest.raises(StoreUnavailable):
            await store.load(sid, touch=60)
        server.start()
        loaded = await store.load(sid, touch=60)
        assert loaded is not None and loaded.decoded()["user"]["email"] == "ann@campus.test"
    finally:
        await store.close()
        server.stop()


async def test_killed_without_persistence_sessions_are_gone_but_nothing_breaks(
    tmp_path: Path, clock: ContractClock
) -> None:
    """The contrast that makes the test above mean something: the default loses them."""
    server = RedisServer(tmp_path)
    server.start()
    store = RedisStore(connect(server.url, timeout=1.0), clock=clock)
    try:
        sid = new_session_id()
        await store.create(sid, record(clock), ttl=60)
        server.kill()
        server.start()
        assert await store.load(sid, touch=60) is None
    finally:
        await store.close()
        server.stop()


@pytest.mark.parametrize(
    "url",
    [
        "redis://127.0.0.1:{0}/0",
        "redis+sentinel://127.0.0.1:{0},127.0.0.1:{1}/campus/0",
        "redis+cluster://127.0.0.1:{0},127.0.0.1:{1}",
    ],
    ids=["single", "sentinel", "cluster"],
)
async def test_nobody_listening_is_store_unavailable_in_every_topology(
    url: str, clock: ContractClock
) -> None:
    store = RedisStore(connect(url.format(free_port(), free_port()), timeout=0.5), clock=clock)
    loop = asyncio.get_running_loop()
    for operation in (
        store.load(new_session_id(), touch=60),
        store.create(new_session_id(), record(clock), ttl=60),
        store.delete_user("ann@campus.test"),
        store.count(),
        store.ping(),
    ):
        started = loop.time()
        with pytest.raises(StoreUnavailable) as raised:
            await operation
        assert loop.time() - started < 1.5
        # Refused at once and said so, not given up on at the deadline (redis-py's default
        # retries with backoff would run into it: seconds per call).
        assert "no answer within" not in str(raised.value)
    await store.close()


@pytest.fixture
def own_cluster(tmp_path: Path) -> Iterator[Cluster]:
    """A Cluster of this test's own (it gets a node killed), started outside the test's loop."""
    cluster = Cluster(tmp_path)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()


@pytest.mark.slow
async def test_a_cluster_node_dies(own_cluster: Cluster, clock: ContractClock) -> None:
    """Keys in its slots (and soon, with the Cluster marked down, all keys) are unavailable:
    StoreUnavailable, not a RedisClusterException (which is no RedisError) leaking out."""
    store = RedisStore(connect(own_cluster.url, timeout=0.5), clock=clock)
    try:
        ids = [new_session_id() for _ in range(20)]  # 20 random slots: all three nodes
        for sid in ids:
            await store.create(sid, record(clock, user="ann@campus.test"), ttl=60)
        own_cluster.nodes[0].kill()
        with pytest.raises(StoreUnavailable):
            for sid in ids:
                await store.load(sid, touch=60)
        with pytest.raises(StoreUnavailable):
            await store.delete_user("ann@campus.test")  # her sessions span every node
    finally:
        await store.close()
