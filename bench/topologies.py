"""Redis topologies for bench/failover.py, each Redis as docs/stores.md recommends.

Sentinel: a primary, a replica, three Sentinels (quorum 2). Cluster: three primaries with a
replica each. Every process on a free port in the given directory.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import redis  # noqa: E402

from tests.support.servers import RedisServer, free_port, wait_for  # noqa: E402

SERVICE = "campus"
DOWN_AFTER_MS = 2000
NODE_TIMEOUT_MS = 2000


def persistence(min_replicas: int) -> list[str]:
    args = ["--appendonly", "yes", "--appendfsync", "everysec", "--repl-diskless-sync-delay", "0"]
    if min_replicas:
        args += ["--min-replicas-to-write", str(min_replicas), "--min-replicas-max-lag", "10"]
    return args


def role(server: RedisServer) -> str:
    try:
        return str(server.client().info("replication")["role"])
    except redis.RedisError:
        return "down"


class SentinelTopology:
    def __init__(self, directory: Path, min_replicas: int) -> None:
        self.directory = directory
        (directory / "primary").mkdir()
        (directory / "replica").mkdir()
        self.primary = RedisServer(directory / "primary", *persistence(min_replicas))
        self.replica = RedisServer(
            directory / "replica",
            *persistence(min_replicas),
            "--replicaof",
            "127.0.0.1",
            str(self.primary.port),
        )
        self.sentinel_ports = [free_port() for _ in range(3)]
        self.sentinels: list[subprocess.Popen[bytes]] = []

    @property
    def url(self) -> str:
        nodes = ",".join(f"127.0.0.1:{p}" for p in self.sentinel_ports)
        return f"redis+sentinel://{nodes}/{SERVICE}/0"

    def start(self) -> None:
        self.primary.start()
        self.replica.start()
        wait_for(
            lambda: self.replica.client().info("replication")["master_link_status"] == "up", "sync"
        )
        for port in self.sentinel_ports:
            conf = self.directory / f"sentinel-{port}.conf"
            conf.write_text(
                f"port {port}\nbind 127.0.0.1\ndir {self.directory}\n"
                f"sentinel monitor {SERVICE} 127.0.0.1 {self.primary.port} 2\n"
                f"sentinel down-after-milliseconds {SERVICE} {DOWN_AFTER_MS}\n"
                f"sentinel failover-timeout {SERVICE} 10000\n"
            )
            binary = shutil.which("redis-server") or "redis-server"
            self.sentinels.append(
                subprocess.Popen([binary, str(conf), "--sentinel"], stdout=subprocess.DEVNULL)
            )

        def ready() -> bool:
            for port in self.sentinel_ports:
                master = redis.Redis(port=port).sentinel_master(SERVICE)
                if master["num-other-sentinels"] < 2 or master["num-slaves"] < 1:
                    return False
            return True

        wait_for(
            ready,
            "three Sentinels that see the replica and each other",
            30,
            ignore=redis.RedisError,
        )

    def victim(self) -> RedisServer:
        return self.primary

    def promoted(self) -> bool:
        return role(self.replica) == "master"

    def stop(self) -> None:
        for process in self.sentinels:
            process.terminate()
            process.wait(10)
        self.replica.stop()
        self.primary.stop()


class ClusterTopology:
    def __init__(self, directory: Path, min_replicas: int) -> None:
        self.nodes = []
        for number in range(6):
            node_dir = directory / f"node{number}"
            node_dir.mkdir()
            self.nodes.append(
                RedisServer(
                    node_dir,
                    *persistence(min_replicas),
                    "--cluster-enabled", "yes",
                    "--cluster-config-file", str(node_dir / "nodes.conf"),
                    "--cluster-port", str(free_port()),
                    "--cluster-node-timeout", str(NODE_TIMEOUT_MS),
                )
            )  # fmt: skip
        self.killed: RedisServer | None = None
        self.its_replica: RedisServer | None = None

    @property
    def url(self) -> str:
        return "redis+cluster://" + ",".join(f"127.0.0.1:{n.port}" for n in self.nodes[:3])

    def start(self) -> None:
        for node in self.nodes:
            node.start()
        addresses = [f"127.0.0.1:{n.port}" for n in self.nodes]
        subprocess.run(
            [
                "redis-cli",
                "--cluster",
                "create",
                *addresses,
                "--cluster-replicas",
                "1",
                "--cluster-yes",
            ],
            check=True,
            capture_output=True,
            timeout=60,
        )

        def whole() -> bool:
            for node in self.nodes:
                client = node.client()
                if client.cluster("INFO")["cluster_state"] != "ok":
                    return False
                info = client.info("replication")
                if info["role"] == "slave" and info["master_link_status"] != "up":
                    return False
            return True

        wait_for(whole, "the Cluster whole, every replica in sync", 60, ignore=redis.RedisError)

    def victim(self) -> RedisServer:
        victim = next(n for n in self.nodes if role(n) == "master")
        self.killed = victim
        self.its_replica = next(
            n
            for n in self.nodes
            if role(n) == "slave"
            and int(n.client().info("replication")["master_port"]) == victim.port
        )
        return victim

    def promoted(self) -> bool:
        assert self.its_replica is not None
        if role(self.its_replica) != "master":
            return False
        return bool(self.its_replica.client().cluster("INFO")["cluster_state"] == "ok")

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()
