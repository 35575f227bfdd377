"""Where Redis is: one server, a Sentinel-watched master, or a Cluster, from one URL.

- ``redis://[[user]:password@]host[:port][/db]``, ``rediss://`` (TLS), ``unix:///path``:
  one server, as redis-py reads them.
- ``redis+sentinel://[[user]:password@]host[:port][,host[:port]...]/service[/db]``: ask these
  Sentinels (port 26379 by default) for the master of ``service``. The credentials are the
  master's; the Sentinels themselves are asked without.
- ``redis+cluster://[[user]:password@]host[:port][,host[:port]...]``: a Cluster reached
  through any of these nodes (port 6379 by default); a Cluster has only database 0.

Configuration parses the URL at startup, so a bad one is refused before anything runs;
error messages never repeat the URL: it may hold a password.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import unquote, urlsplit

from redis.asyncio import BlockingConnectionPool, Redis, RedisCluster
from redis.asyncio.cluster import ClusterNode
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel, SentinelConnectionPool
from redis.backoff import NoBackoff

SINGLE_SCHEMES = ("redis", "rediss", "unix")
SENTINEL_SCHEME = "redis+sentinel"
CLUSTER_SCHEME = "redis+cluster"
SCHEMES = (*SINGLE_SCHEMES, SENTINEL_SCHEME, CLUSTER_SCHEME)
#: Every message ends so: a password with one of these characters splits the URL elsewhere,
#: and no message quotes the part it found (it may be the password's tail).
ENCODE_HINT = " (in a password, write / ? # @ : as %2F %3F %23 %40 %3A)"
#: Connections to one Redis server per process: writes only (reads share one, pipelined).
POOL_SIZE = 100
#: After "scheme://": the authority (up to "/", "?" or "#"), then the path (query dropped).
_NETLOC_AND_PATH = re.compile(r"([^/?#]*)([^?#]*)")


@dataclass(frozen=True, slots=True)
class RedisTarget:
    kind: Literal["single", "sentinel", "cluster"]
    url: str
    nodes: tuple[tuple[str, int], ...] = ()  # Sentinels or Cluster nodes
    service: str = ""  # Sentinel's name for the master
    db: int = 0
    username: str | None = field(default=None, repr=False)
    password: str | None = field(default=None, repr=False)


def parse_redis_url(url: str) -> RedisTarget:
    """Raises ValueError with a message fit to show (no password in it)."""
    scheme = url.partition("://")[0].lower() if "://" in url else ""
    if scheme in SINGLE_SCHEMES:
        _check_single(url, scheme)
        return RedisTarget("single", url)
    if scheme not in (SENTINEL_SCHEME, CLUSTER_SCHEME):
        raise ValueError(f"scheme must be {', '.join(SCHEMES)}")
    # Not urlsplit(): since the fix for CVE-2024-11168 (in Debian 12's 3.11.2 too) it refuses a
    # host list with a bracketed IPv6 address after another host ("Invalid IPv6 URL").
    split = _NETLOC_AND_PATH.match(url.partition("://")[2])
    assert split is not None  # it matches any text, if only with empty groups
    netloc, path_text = split.groups()
    userinfo, _, hosts = netloc.rpartition("@")
    username, _, password = userinfo.partition(":")
    default_port = 26379 if scheme == SENTINEL_SCHEME else 6379
    nodes = tuple(_node(item, default_port) for item in hosts.split(","))
    path = [segment for segment in path_text.split("/") if segment]
    if scheme == SENTINEL_SCHEME:
        if not path or len(path) > 2:
            raise ValueError(f"want {SENTINEL_SCHEME}://host:port,.../service_name[/db]")
        service, db = unquote(path[0]), _db(path[1:])
    else:
        service, db = "", _db(path)
        if len(path) > 1 or db != 0:
            raise ValueError(f"a Cluster has only database 0: {CLUSTER_SCHEME}://host:port,...")
    return RedisTarget(
        "sentinel" if scheme == SENTINEL_SCHEME else "cluster",
        url,
        nodes,
        service,
        db,
        unquote(username) or None,
        unquote(password) if userinfo and password else None,
    )


def _check_single(url: str, scheme: str) -> None:
    """What redis-py would only find out at the first command, with a traceback."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as err:  # "Port out of range 0-65535", "Invalid IPv6 URL", ...
        # Never urllib's own words: "Port could not be cast to integer value as '...'"
        # quotes what may be the password's tail.
        what = (
            "bad IPv6 address in brackets"
            if "IPv6" in str(err)
            else "port out of range (want 1..65535)"
            if "out of range" in str(err)
            else "bad port"
        )
        raise ValueError(f"malformed URL: {what}{ENCODE_HINT}") from None
    if scheme == "unix":
        if not parts.path:
            raise ValueError("want unix:///path/to/redis.sock")
        return
    if not parts.hostname:
        raise ValueError(f"want {scheme}://[[user]:password@]host[:port][/db]")
    if port == 0:
        raise ValueError("bad port 0 (want 1..65535)")
    path = [segment for segment in parts.path.split("/") if segment]
    if len(path) > 1:
        raise ValueError("the path is the database number only")
    _db(path)


def _node(item: str, default_port: int) -> tuple[str, int]:
    item = item.strip()
    if item.startswith("["):  # [IPv6]:port
        host, _, rest = item[1:].partition("]")
        port_text = rest.removeprefix(":")
    else:
        host, _, port_text = item.partition(":")
    if not host:
        raise ValueError("every node needs a host (host:port, comma-separated)")
    if not port_text:
        return host, default_port
    if not (port_text.isascii() and port_text.isdigit()) or not 0 < int(port_text) < 65536:
        raise ValueError(f"bad port (want 1..65535){ENCODE_HINT}")
    return host, int(port_text)


def _db(path: list[str]) -> int:
    if not path:
        return 0
    if not (path[0].isascii() and path[0].isdigit()):
        raise ValueError(f"the database must be a number{ENCODE_HINT}")
    return int(path[0])


def connect(url: str, *, timeout: float) -> Redis | RedisCluster:
    """A client for any URL above, with bounded timeouts. No I/O until its first command.

    One retry without backoff: enough to replace a pooled connection that a Redis restart
    (or a Sentinel failover) closed, yet an outage still fails fast instead of hanging.
    """
    target = parse_redis_url(url)
    bounded: dict[str, Any] = {
        "socket_timeout": timeout,
        "socket_connect_timeout": timeout,
        "retry": Retry(NoBackoff(), 1),
    }
    if target.kind == "single":
        # Blocking: past POOL_SIZE connections in use, a command waits (up to the timeout)
        # for one to come back; redis-py's default pool fails it at once.
        pool = BlockingConnectionPool.from_url(
            url, max_connections=POOL_SIZE, timeout=timeout, health_check_interval=30, **bounded
        )
        return Redis.from_pool(pool)
    credentials: dict[str, Any] = {"username": target.username, "password": target.password}
    if target.kind == "sentinel":
        sentinel = Sentinel(
            list(target.nodes),
            sentinel_kwargs=bounded,  # else redis-py's default: retries with backoff (seconds)
        )
        master: Redis = sentinel.master_for(
            target.service, db=target.db, health_check_interval=30, **credentials, **bounded
        )
        return master
    nodes = [ClusterNode(host, port) for host, port in target.nodes]
    return RedisCluster(startup_nodes=nodes, health_check_interval=30, **credentials, **bounded)


async def close(client: Redis | RedisCluster) -> None:
    """Close the client's connections, and for Sentinel those to the Sentinels as well."""
    pool = getattr(client, "connection_pool", None)
    await client.aclose()
    if isinstance(pool, SentinelConnectionPool):
        for sentinel in pool.sentinel_manager.sentinels:
            await sentinel.aclose()
