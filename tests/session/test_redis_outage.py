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
from tests.support.redis_topologies import Cluster, cluster_ok, wait_for
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


async def test_a_burst_on_a_cluster_while_a_node_restarts(
    own_cluster: Cluster, clock: ContractClock
) -> None:
    """Logins at 9 a.m. while a node restarts: every operation succeeds or is StoreUnavailable.

    With redis-py 8.1, a connection error on one node made the client close that node's idle
    connections while other commands were taking them: some of those failed with
    AttributeError ('NoneType' object has no attribute 'writelines'), a 500 to the user.
    """
    store = RedisStore(connect(own_cluster.url, timeout=1.0), clock=clock)
    other: list[str] = []

    async def visit(number: int) -> None:
        sid, user = new_session_id(), f"user{number % 20}@campus.test"
        try:
            await store.create(sid, record(clock, user), ttl=60)
            for _ in range(3):
                await store.load(sid, touch=60)
            await store.update(sid, encode_values({"n": number}), [], ttl=60, user=user)
            await store.delete(sid)
        except StoreUnavailable:
            pass  # the node is down (or the machine too busy to answer in time): a 503
        except Exception as exc:  # anything else would be a 500
            other.append(repr(exc))

    async def restart(node: RedisServer) -> None:
        await asyncio.sleep(0.05)  # the burst is under way
        await asyncio.to_thread(node.stop)
        await asyncio.to_thread(node.start)

    try:
        await asyncio.gather(*(visit(n) for n in range(50)))  # every node's pool is warm
        node = own_cluster.nodes[0]
        await asyncio.gather(restart(node), *(visit(n) for n in range(400)))
        assert other == []
        # ... and once the Cluster says it is whole again, it serves again.
        await asyncio.to_thread(
            wait_for, lambda: cluster_ok(node.client()), "the Cluster to be whole again"
        )
        deadline = asyncio.get_running_loop().time() + 20
        while True:  # the client finds the node again at its next topology refresh
            try:
                await store.ping()
                await store.create(new_session_id(), record(clock), ttl=60)
                break
            except StoreUnavailable:
                assert asyncio.get_running_loop().time() < deadline, "the Cluster never recovered"
                await asyncio.sleep(0.2)
        await asyncio.gather(*(visit(n) for n in range(400)))
        assert other == []
    finally:
        await store.close()


async def test_concurrent_listings_on_a_cluster_stay_within_the_pools(
    redis_cluster: Cluster, clock: ContractClock
) -> None:
    """A listing on a Cluster sends one command per session. Sent all at once, a dozen
    listings of a user with 100 sessions took more connections than a node's pool holds
    (redis-py's MaxConnectionsError, a 503); each command now waits for a slot."""
    redis_cluster.flush()
    store = RedisStore(connect(redis_cluster.url, timeout=5.0), clock=clock)
    try:
        for _ in range(100):
            await store.create(new_session_id(), record(clock, user="ann@campus.test"), ttl=60)
        listings = await asyncio.gather(*(store.sessions_of("ann@campus.test") for _ in range(12)))
        assert [len(listing) for listing in listings] == [100] * 12
    finally:
        await store.close()
