"""Redis URLs: one server, Sentinel, Cluster. Parsing only, and clients built without I/O."""

from __future__ import annotations

import pytest
from redis.asyncio import Redis, RedisCluster
from redis.asyncio.sentinel import SentinelConnectionPool

from campus.session.stores.redis_url import RedisTarget, connect, parse_redis_url


def test_single_server_urls_are_left_to_redis_py() -> None:
    for url in ("redis://h:1/2", "rediss://:pw@h", "unix:///run/redis.sock"):
        assert parse_redis_url(url) == RedisTarget("single", url)


def test_sentinel_url() -> None:
    target = parse_redis_url("redis+sentinel://u%40x:p%3Aw@s1:1,[::1]:2,s3/my%20master/3")
    assert target.kind == "sentinel"
    assert target.nodes == (("s1", 1), ("::1", 2), ("s3", 26379))
    assert (target.service, target.db) == ("my master", 3)
    assert (target.username, target.password) == ("u@x", "p:w")
    assert "p:w" not in repr(target)


def test_an_ipv6_sentinel_after_another_host_and_a_query_are_read() -> None:
    # urlsplit() refuses this host list since the fix for CVE-2024-11168 (Debian 12 has it).
    target = parse_redis_url("redis+sentinel://s1,[2001:db8::7]:26380/campus?ignored=1#x")
    assert target.nodes == (("s1", 26379), ("2001:db8::7", 26380))
    assert (target.service, target.db) == ("campus", 0)


def test_sentinel_url_defaults() -> None:
    target = parse_redis_url("redis+sentinel://s1/campus")
    assert (target.nodes, target.db, target.username, target.password) == (
        (("s1", 26379),),
        0,
        None,
        None,
    )
    assert parse_redis_url("redis+sentinel://:secret@s1/campus").password == "secret"


def test_cluster_url() -> None:
    target = parse_redis_url("REDIS+CLUSTER://n1:7000,n2")
    assert (target.kind, target.nodes) == ("cluster", (("n1", 7000), ("n2", 6379)))
    assert parse_redis_url("redis+cluster://n1/0").db == 0


@pytest.mark.parametrize(
    "url",
    [
        "redis+sentinel://s1",
        "redis+sentinel://s1/a/1/2",
        "redis+sentinel://s1:0/a",
        "redis+sentinel://s1:99999/a",
        "redis+sentinel://:pw@/a",
        "redis+cluster://n1/1",
        "redis+cluster://n1:x",
        "memcached://m1",
        "localhost:6379",
    ],
)
def test_bad_urls(url: str) -> None:
    with pytest.raises(ValueError):
        parse_redis_url(url)


def test_clients_for_each_kind() -> None:
    sentinel = connect("redis+sentinel://:pw@127.0.0.1:1/campus/2", timeout=0.5)
    assert isinstance(sentinel, Redis)
    pool = sentinel.connection_pool
    assert isinstance(pool, SentinelConnectionPool) and pool.service_name == "campus"
    assert pool.connection_kwargs["db"] == 2 and pool.connection_kwargs["password"] == "pw"
    assert pool.connection_kwargs["socket_timeout"] == 0.5
    for client in pool.sentinel_manager.sentinels:  # the Sentinels are asked without
        assert client.get_connection_kwargs().get("password") is None
    cluster = connect("redis+cluster://127.0.0.1:1", timeout=0.5)
    assert isinstance(cluster, RedisCluster)
    assert cluster.get_connection_kwargs()["socket_timeout"] == 0.5


@pytest.mark.parametrize(
    "url",
    [
        "redis://user:Secr3tPw/x@host:6379/0",
        "redis://:Secr3tPw?x@host:6379/0",
        "redis+sentinel://user:Secr3tPw/x@host:26379/mymaster",
        "redis+cluster://user:Secr3tPw/x@n1:7000",
        "redis+sentinel://user:pw@host/master/Secr3tPw",
        "rediss://:Secr3tPw#x@[::1:6379/0",
    ],
)
def test_no_message_quotes_a_part_of_the_url(url: str) -> None:
    # An unencoded / ? or # in a password splits the URL elsewhere: the "port" or
    # "database" found is then the password's tail.
    with pytest.raises(ValueError) as refused:
        parse_redis_url(url)
    message = str(refused.value)
    assert "secr3tpw" not in message.lower() and "%2F" in message, message
