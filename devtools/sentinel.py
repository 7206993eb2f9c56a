"""A Sentinel-managed Redis on loopback: a master, one replica and three Sentinels, as real processes."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import redis

from devtools.processes import Proc, start_redis
from maoocr.embedded import free_port, redis_server_binary

MASTER_NAME = "mymaster"


class SentinelRedis:
    """Master, replica and Sentinels (quorum 2) with fast failure detection, so a failover takes seconds.

    `url` is the sentinel:// URL MaoOCR takes; the Sentinels know the master's password (auth-pass)."""

    def __init__(self, workdir: Path, password: str, down_after_ms: int = 1000, failover_timeout_ms: int = 3000,
                 sentinels: int = 3) -> None:
        self.workdir, self.password = workdir, password
        self.procs: list[Proc] = []
        try:
            # No diskless-sync delay: the replica is in sync within moments, not after Redis's default 5 s.
            self.master, master_url = start_redis(workdir / "master", password=password,
                                                  extra=["--masterauth", password, "--repl-diskless-sync-delay", "0"])
            self.master_port = _port(master_url)
            self.replica, replica_url = start_redis(workdir / "replica", password=password, extra=[
                "--replicaof", "127.0.0.1", str(self.master_port), "--masterauth", password])
            self.replica_port = _port(replica_url)
            self.procs += [self.master, self.replica]
            self.sentinel_ports = [free_port() for _ in range(sentinels)]
            for port in self.sentinel_ports:
                self.procs.append(self._start_sentinel(port, down_after_ms, failover_timeout_ms))
            self.wait_settled()
        except BaseException:
            self.stop()
            raise
        hosts = ",".join(f"127.0.0.1:{port}" for port in self.sentinel_ports)
        self.url = f"sentinel://:{password}@{hosts}/0?master={MASTER_NAME}"

    def _start_sentinel(self, port: int, down_after_ms: int, failover_timeout_ms: int) -> Proc:
        directory = self.workdir / f"sentinel-{port}"
        directory.mkdir(parents=True, exist_ok=True)
        config = directory / "sentinel.conf"  # Sentinel rewrites its file with what it learns: one each
        config.write_text(f"port {port}\nbind 127.0.0.1\ndir {directory}\n"
                          f"sentinel monitor {MASTER_NAME} 127.0.0.1 {self.master_port} 2\n"
                          f"sentinel auth-pass {MASTER_NAME} {self.password}\n"
                          f"sentinel down-after-milliseconds {MASTER_NAME} {down_after_ms}\n"
                          f"sentinel failover-timeout {MASTER_NAME} {failover_timeout_ms}\n"
                          f"sentinel parallel-syncs {MASTER_NAME} 1\n")
        log = directory / "sentinel.log"
        popen = subprocess.Popen([redis_server_binary(), str(config), "--sentinel"], stdout=log.open("w"),
                                 stderr=subprocess.STDOUT)
        return Proc(f"sentinel-{port}", popen, log)

    def sentinel(self, port: int) -> redis.Redis:
        return redis.Redis(port=port, decode_responses=True, socket_timeout=2)

    def master_address(self) -> tuple[str, int] | None:
        """Where the Sentinels (a majority of them) say the master is now."""
        seen: dict[tuple[str, int], int] = {}
        for port in self.sentinel_ports:
            try:
                host, master_port = self.sentinel(port).sentinel_get_master_addr_by_name(MASTER_NAME)
            except (redis.RedisError, TypeError):
                continue
            seen[(host, int(master_port))] = seen.get((host, int(master_port)), 0) + 1
        agreed = [address for address, votes in seen.items() if votes * 2 > len(self.sentinel_ports)]
        return agreed[0] if agreed else None

    def wait_settled(self, timeout_s: float = 60) -> None:
        """Until the replica is in sync and every Sentinel sees the master, its replica and the other Sentinels."""
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                replica = redis.Redis(port=self.replica_port, password=self.password, socket_timeout=2)
                states = [self.sentinel(port).sentinel_master(MASTER_NAME) for port in self.sentinel_ports]
                in_sync = replica.info("replication").get("master_link_status") == "up"
                if in_sync and all(s["num-slaves"] >= 1 and not s["is_sdown"]
                                   and s["num-other-sentinels"] >= len(self.sentinel_ports) - 1 for s in states):
                    return
            except redis.RedisError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("the Sentinels did not settle:\n" + "\n".join(p.tail(20) for p in self.procs))
            time.sleep(0.2)

    def wait_promoted(self, away_from: int, timeout_s: float = 60) -> tuple[str, int]:
        """Until the Sentinels name a master other than the one on `away_from` and it answers as a master."""
        deadline = time.monotonic() + timeout_s
        while True:
            address = self.master_address()
            if address is not None and address[1] != away_from:
                try:
                    client = redis.Redis(host=address[0], port=address[1], password=self.password, socket_timeout=2)
                    if client.info("replication")["role"] == "master":
                        return address
                except redis.RedisError:
                    pass
            if time.monotonic() > deadline:
                raise RuntimeError("no replica was promoted:\n" + "\n".join(p.tail(20) for p in self.procs))
            time.sleep(0.1)

    def stop(self) -> None:
        for proc in reversed(self.procs):
            proc.stop()


def _port(url: str) -> int:
    return int(url.rsplit(":", 1)[1].split("/")[0])
