"""One contract, every store: campus.session.contract run against each store campus ships.

The memory store, Redis, a real Redis Cluster and a real Sentinel group
(tests/support/redis_topologies.py). What only one store promises is in test_stores_specific.py.
"""

from __future__ import annotations

import pytest

from campus.session.contract import ContractClock, StoreContract
from campus.session.stores.memory import MemoryStore
from campus.session.stores.redis import RedisStore
from tests.support.servers import RedisServer


class TestMemoryStore(StoreContract):
    """Its idle expiry follows the injected clock: no test here waits."""

    async def make_store(self, clock: ContractClock) -> MemoryStore:
        return MemoryStore(max_sessions=1000, clock=clock)


class RedisContract(StoreContract):
    idle_follows_clock = False  # TTLs are Redis's own (real) milliseconds
    url = ""

    async def make_store(self, clock: ContractClock) -> RedisStore:
        return RedisStore.from_url(self.url, prefix="test:", timeout=1.0, clock=clock)


class TestRedisStore(RedisContract):
    @pytest.fixture(autouse=True)
    def _redis(self, redis_server: RedisServer, redis_db: object) -> None:
        self.url = redis_server.url


class TestRedisCluster(RedisContract):
    @pytest.fixture(autouse=True)
    def _redis(self, redis_cluster: object) -> None:
        redis_cluster.flush()  # type: ignore[attr-defined]
        self.url = redis_cluster.url  # type: ignore[attr-defined]


class TestRedisSentinel(RedisContract):
    @pytest.fixture(autouse=True)
    def _redis(self, redis_sentinel: object) -> None:
        redis_sentinel.flush()  # type: ignore[attr-defined]
        self.url = redis_sentinel.url  # type: ignore[attr-defined]
