"""Run the real node as a subprocess (``python -m mmbcd_node serve``) for end-to-end tests.

``node_factory(roles=[...], settings={...})`` writes a configuration with free loopback
ports, the test's database and a storage root under tmp_path, applies the migrations
and starts the node; the returned ``RunningNode`` can be stopped, killed (-9) and
restarted with the same configuration.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import tomli_w

from mmbcd_node.db import migrate

NODE_AE = "MMBCD"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(port: int, timeout: float = 30.0, host: str = "127.0.0.1") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listens on {host}:{port} after {timeout}s")


def deep_merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def loopback_settings(db_url: str, storage_root: Path) -> dict[str, Any]:
    """Node settings for a test: this database and storage root, free loopback ports,
    our AE title and no free-space floor."""
    return {
        "database": {"url": db_url},
        "storage": {"root": str(storage_root)},
        "dicom": {"ae_title": NODE_AE, "host": "127.0.0.1", "port": free_port(),
                  "min_free_bytes": 0},
        "hl7": {"host": "127.0.0.1", "port": free_port()},
        "http": {"host": "127.0.0.1", "port": free_port()},
    }


@dataclass
class RunningNode:
    config_path: Path
    settings: dict[str, Any]
    roles: list[str]
    log_path: Path
    process: subprocess.Popen[bytes] | None = None
    env: dict[str, str] = field(default_factory=dict)

    @property
    def dicom_port(self) -> int:
        return int(self.settings["dicom"]["port"])

    @property
    def hl7_port(self) -> int:
        return int(self.settings["hl7"]["port"])

    @property
    def http_port(self) -> int:
        return int(self.settings["http"]["port"])

    @property
    def storage_root(self) -> Path:
        return Path(self.settings["storage"]["root"])

    @property
    def db_url(self) -> str:
        return str(self.settings["database"]["url"])

    def cli(self, *args: str, check: bool = True,
            timeout: float = 120) -> subprocess.CompletedProcess[str]:
        """Run ``mmbcd-node --config <this node's config> ARGS``."""
        result = subprocess.run(
            [sys.executable, "-m", "mmbcd_node", "--config", str(self.config_path), *args],
            capture_output=True, text=True, timeout=timeout, env={**os.environ, **self.env})
        if check and result.returncode != 0:
            raise AssertionError(f"mmbcd-node {' '.join(args)} exited {result.returncode}:\n"
                                 f"{result.stdout}\n{result.stderr}")
        return result

    def start(self, wait_ports: tuple[str, ...] | None = None) -> RunningNode:
        args = [sys.executable, "-m", "mmbcd_node", "--config", str(self.config_path), "serve"]
        for role in self.roles:
            args += ["--role", role]
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT,
                                        env={**os.environ, **self.env})
        log.close()
        listening = {"dicom": "dicom", "hl7": "hl7", "http": "http"}
        wanted = wait_ports if wait_ports is not None else tuple(
            listening[r] for r in self.roles if r in listening)
        try:
            for name in wanted:
                wait_for_port(int(self.settings[name]["port"]))
        except TimeoutError:
            self.stop()
            raise AssertionError(f"node did not start:\n{self.log_text()}") from None
        return self

    @property
    def rss_bytes(self) -> int:
        """The node process's resident memory now (``VmRSS``)."""
        assert self.process is not None
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        raise AssertionError("no VmRSS for the node process")

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self, timeout: float = 20) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def kill(self) -> None:
        """kill -9: no clean-up of any kind runs in the node."""
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait()

    def restart(self) -> RunningNode:
        self.stop()
        return self.start()


NodeFactory = Callable[..., RunningNode]


@pytest.fixture
def node_factory(tmp_path: Path, db_url: str) -> Iterator[NodeFactory]:
    """Make (and afterwards stop) nodes sharing this test's database and storage root."""
    nodes: list[RunningNode] = []

    def make(roles: list[str] | None = None, settings: dict[str, Any] | None = None,
             start: bool = True, env: dict[str, str] | None = None) -> RunningNode:
        base = deep_merge(loopback_settings(db_url, tmp_path / "storage"), {
            "completion": {"expected_views_quiet_seconds": 1.0, "quiet_seconds": 30.0,
                           "check_interval_seconds": 0.2},
        })
        merged = deep_merge(base, settings or {})
        index = len(nodes)
        config_path = tmp_path / f"node{index}.toml"
        config_path.write_text(tomli_w.dumps(merged))
        node = RunningNode(config_path=config_path, settings=merged,
                           roles=list(roles or ["dicom", "scheduler"]),
                           log_path=tmp_path / f"node{index}.log", env=dict(env or {}))
        nodes.append(node)
        migrate.upgrade(db_url)
        if start:
            node.start()
        return node

    yield make
    for node in nodes:
        node.stop()
