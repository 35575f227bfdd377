"""Real local Redis topologies for the tests: a three-master Cluster and a Sentinel group.

Every process runs on free ports in the test's own directory and is stopped by the test
suite; every wait is bounded.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable
from functools import partial
from pathlib import Path

import pytest
import redis

from tests.support import servers
from tests.support.processes import require_slow
from tests.support.servers import RedisServer, free_port

SERVICE = "campus"


def wait_for(condition: Callable[[], object], what: str, seconds: float = 20) -> None:
    """:func:`tests.support.servers.wait_for`, where a Redis error (a node not up yet) means
    "not yet"."""
    servers.wait_for(condition, what, seconds, ignore=redis.RedisError)


def cluster_ok(client: redis.Redis) -> bool:
    return bool(client.cluster("INFO")["cluster_state"] == "ok")


def _subdir(parent: Path, name: str) -> Path:
    path = parent / name
    path.mkdir(parents=True, exist_ok=True)
    return path


class Cluster:
    """Three masters, no replicas: `redis-server --cluster-enabled` + `redis-cli --cluster`."""

    def __init__(self, directory: Path, masters: int = 3) -> None:
        self.nodes = []
        for number in range(masters):
            node_dir = _subdir(directory, f"node{number}")
            self.nodes.append(
                RedisServer(
                    node_dir,
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    str(node_dir / "nodes.conf"),
                    "--cluster-port",
                    str(free_port()),  # not port + 10000, which may be taken or out of range
                    "--cluster-node-timeout",
                    "2000",
                )
            )

    @property
    def url(self) -> str:
        return "redis+cluster://" + ",".join(f"127.0.0.1:{n.port}" for n in self.nodes)

    def start(self) -> None:
        require_slow("a Redis Cluster")
        cli = shutil.which("redis-cli")
        if cli is None:
            pytest.fail("redis-cli is not on PATH (Debian's redis-server package ships it)")
        for node in self.nodes:
            node.start()
        nodes = [f"127.0.0.1:{n.port}" for n in self.nodes]
        subprocess.run(
            [cli, "--cluster", "create", *nodes, "--cluster-replicas", "0", "--cluster-yes"],
            check=True,
            capture_output=True,
            timeout=60,
        )
        for node in self.nodes:
            client = node.client()
            wait_for(partial(cluster_ok, client), f"cluster state ok on port {node.port}")

    def flush(self) -> None:
        for node in self.nodes:
            node.client().flushall()

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()


class SentinelGroup:
    """A master, one replica and one Sentinel watching them as service ``campus``."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        # A replica's first sync waits 5 s by default, for more replicas to share it.
        self.master = RedisServer(_subdir(directory, "master"), "--repl-diskless-sync-delay", "0")
        self.replica = RedisServer(
            _subdir(directory, "replica"), "--replicaof", "127.0.0.1", str(self.master.port)
        )
        self.sentinel_port = free_port()
        self.sentinel: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis+sentinel://127.0.0.1:{self.sentinel_port}/{SERVICE}/0"

    def sentinel_client(self) -> redis.Redis:
        return redis.Redis(port=self.sentinel_port, socket_timeout=2)

    def current_master(self) -> redis.Redis:
        address = self.sentinel_client().sentinel_get_master_addr_by_name(SERVICE)
        assert isinstance(address, tuple), f"the Sentinel names no master: {address!r}"
        host, port = address
        host = host.decode() if isinstance(host, bytes) else host
        return redis.Redis(host=host, port=int(port), socket_timeout=2)

    def start(self) -> None:
        require_slow("a Sentinel group")
        self.master.start()
        self.replica.start()
        replica = self.replica.client()
        wait_for(lambda: replica.info("replication")["master_link_status"] == "up", "replication")
        sentinel_dir = _subdir(self.directory, "sentinel")
        config = sentinel_dir / "sentinel.conf"  # Sentinel rewrites it: it must be its own
        config.write_text(
            f"port {self.sentinel_port}\nbind 127.0.0.1\ndir {sentinel_dir}\n"
            f"sentinel monitor {SERVICE} 127.0.0.1 {self.master.port} 1\n"
            f"sentinel down-after-milliseconds {SERVICE} 1000\n"
            f"sentinel failover-timeout {SERVICE} 5000\n"
        )
        self.sentinel = subprocess.Popen(
            [self.master.binary, str(config), "--sentinel"], stdout=subprocess.DEVNULL
        )
        sentinel = self.sentinel_client()
        wait_for(lambda: self._replica_known(sentinel), "the Sentinel to see the replica")

    def _replica_known(self, sentinel: redis.Redis) -> bool:
        replicas = sentinel.sentinel_slaves(SERVICE)
        return any(
            int(r["port"]) == self.replica.port
            and r["is_slave"]
            and not r["is_odown"]
            and not r["is_sdown"]
            and not r["is_disconnected"]
            for r in replicas
        )

    def fail_over(self) -> None:
        """SENTINEL FAILOVER; return once the Sentinel names the promoted replica as master.

        The old master keeps running and taking writes from clients still connected to it
        until the Sentinel demotes it, 10-20 s later (its INFO period plus a grace), and those
        writes are lost when it resyncs as a replica: Redis's split brain, which
        ``min-replicas-to-write 1`` on the master closes. Tests stop the old master instead of
        waiting, as an operator retiring it for maintenance would.
        """
        old_port = self.master.port
        servers.redis_command(self.sentinel_client(), "SENTINEL", "FAILOVER", SERVICE)

        def promoted() -> bool:
            new = self.current_master()
            return bool(
                new.connection_pool.connection_kwargs["port"] != old_port
                and new.info("replication")["role"] == "master"
            )

        wait_for(promoted, "the failover")

    def flush(self) -> None:
        self.current_master().flushall()

    def stop(self) -> None:
        if self.sentinel is not None:
            self.sentinel.terminate()
            self.sentinel.wait(10)
            self.sentinel = None
        self.replica.stop()
        self.master.stop()
