"""Real PACS peers on loopback for sending tests: dcmtk ``storescp`` and Orthanc.

``storescp_factory(ae_title=...)`` starts ``storescp`` writing every received object to
its own file (``--unique-filenames``), so an object sent twice shows up twice.
``orthanc_factory(node_ae=..., node_port=...)`` starts Orthanc with a JSON config on free
ports; it knows the node as a modality, so its storage commitment reports (sent on a
new association) reach the node's listener. Both can be stopped and started again
on the same port to play a PACS that goes down and comes back.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pydicom
import pytest

from tests.support.node import free_port, wait_for_port


@dataclass
class StoreScp:
    ae_title: str
    port: int
    directory: Path
    log_path: Path
    process: subprocess.Popen[bytes] | None = None
    # (key, certificate, CA): TLS only, the peer's certificate required and verified
    tls: tuple[Path, Path, Path] | None = None
    accept_compressed: bool = True  # False: only the uncompressed syntaxes, storescp's default

    def start(self) -> StoreScp:
        self.directory.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("ab")
        tls = [] if self.tls is None else [
            "+tls", str(self.tls[0]), str(self.tls[1]), "+cf", str(self.tls[2]),
            "--require-peer-cert"]
        self.process = subprocess.Popen(
            ["storescp", "--aetitle", self.ae_title, "--output-directory", str(self.directory),
             "--unique-filenames", *(["+xa"] if self.accept_compressed else []), "--verbose",
             *tls, str(self.port)],
            stdout=log, stderr=subprocess.STDOUT)
        log.close()
        wait_for_port(self.port, timeout=15)
        return self

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)
        self.process = None

    def received(self) -> list[pydicom.Dataset]:
        """Every object received so far, one entry per reception."""
        return [pydicom.dcmread(p) for p in sorted(self.directory.iterdir()) if p.is_file()]

    def received_uids(self) -> list[str]:
        return [str(ds.SOPInstanceUID) for ds in self.received()]

    def files(self) -> list[Path]:
        return sorted(p for p in self.directory.iterdir() if p.is_file())


@dataclass
class Orthanc:
    ae_title: str
    port: int
    http_port: int
    directory: Path
    node_ae: str
    node_port: int
    log_path: Path
    process: subprocess.Popen[bytes] | None = None
    extra: dict[str, object] = field(default_factory=dict)

    def start(self) -> Orthanc:
        self.directory.mkdir(parents=True, exist_ok=True)
        config = {
            "Name": "test-pacs", "StorageDirectory": str(self.directory / "db"),
            "IndexDirectory": str(self.directory / "db"), "DicomAet": self.ae_title,
            "DicomPort": self.port, "HttpPort": self.http_port, "RemoteAccessAllowed": False,
            "AuthenticationEnabled": False, "HttpServerEnabled": True, "Plugins": [],
            "DicomCheckCalledAet": True, "DicomAlwaysAllowStore": True,
            "DicomAlwaysAllowEcho": True, "UnknownSopClassAccepted": True,
            "DicomModalities": {"node": [self.node_ae, "127.0.0.1", self.node_port]},
            "StableAge": 1, **self.extra,
        }
        config_path = self.directory / "orthanc.json"
        config_path.write_text(json.dumps(config))
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(["Orthanc", "--verbose", str(config_path)], stdout=log,
                                        stderr=subprocess.STDOUT)
        log.close()
        wait_for_port(self.port, timeout=30)
        wait_for_port(self.http_port, timeout=30)
        return self

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(20)
        self.process = None

    @property
    def url(self) -> str:
        """The base URL of its REST API."""
        return f"http://127.0.0.1:{self.http_port}"

    def rest(self, path: str) -> object:
        with urllib.request.urlopen(f"{self.url}{path}", timeout=10) as response:
            return json.loads(response.read())

    def sop_instance_uids(self) -> set[str]:
        """The SOP Instance UIDs Orthanc holds now."""
        uids = set()
        for orthanc_id in self.rest("/instances"):  # type: ignore[union-attr]
            tags = self.rest(f"/instances/{orthanc_id}/simplified-tags")
            uids.add(tags["SOPInstanceUID"])  # type: ignore[index]
        return uids

    def dataset(self, sop_instance_uid: str) -> pydicom.Dataset:
        for orthanc_id in self.rest("/instances"):  # type: ignore[union-attr]
            with urllib.request.urlopen(
                    f"http://127.0.0.1:{self.http_port}/instances/{orthanc_id}/file",
                    timeout=10) as response:
                ds = pydicom.dcmread(__import__("io").BytesIO(response.read()))
            if ds.SOPInstanceUID == sop_instance_uid:
                return ds
        raise KeyError(sop_instance_uid)


def wait_until(predicate: Callable[[], object], timeout: float = 60.0,
               interval: float = 0.2, message: str = "condition") -> object:
    """Poll ``predicate`` until it returns something truthy; fail the test on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {message}")
        time.sleep(interval)


@pytest.fixture
def storescp_factory(tmp_path: Path) -> Iterator[Callable[..., StoreScp]]:
    peers: list[StoreScp] = []

    def make(ae_title: str = "PACS", start: bool = True,
             tls: tuple[Path, Path, Path] | None = None,
             accept_compressed: bool = True) -> StoreScp:
        peer = StoreScp(ae_title=ae_title, port=free_port(),
                        directory=tmp_path / f"storescp{len(peers)}",
                        log_path=tmp_path / f"storescp{len(peers)}.log", tls=tls,
                        accept_compressed=accept_compressed)
        peers.append(peer)
        return peer.start() if start else peer

    yield make
    for peer in peers:
        peer.stop()


@pytest.fixture
def orthanc_factory(tmp_path: Path) -> Iterator[Callable[..., Orthanc]]:
    if shutil.which("Orthanc") is None:
        pytest.skip("Orthanc is not installed")
    peers: list[Orthanc] = []

    def make(node_ae: str, node_port: int, ae_title: str = "ORTHANC",
             start: bool = True) -> Orthanc:
        peer = Orthanc(ae_title=ae_title, port=free_port(), http_port=free_port(),
                       directory=tmp_path / f"orthanc{len(peers)}", node_ae=node_ae,
                       node_port=node_port, log_path=tmp_path / f"orthanc{len(peers)}.log")
        peers.append(peer)
        return peer.start() if start else peer

    yield make
    for peer in peers:
        peer.stop()
