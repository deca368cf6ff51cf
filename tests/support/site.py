"""A two-host site on network namespaces: what a hospital runs, on one machine.

::

    peers (modality, RIS, PACS) --- lb (HAProxy) ---+--- host-a (serve, all roles)
                                                    +--- host-b (serve, all roles)
                                                    +--- db (PostgreSQL)

Each box is a network namespace with one address on a bridge that lives in a sixth
namespace, so nothing is added to the machine's own network. Hosts A and B run
``mmbcd-node serve`` with their own host names (a UTS namespace each) against the
PostgreSQL of the db namespace, over one shared storage root (a folder both see; NFS or
CephFS in production). HAProxy runs ``deploy/haproxy.cfg`` unchanged. The PACS is dcmtk
``storescp`` and the RIS an MLLP listener, both in the peers namespace; the modality is
dcmtk ``storescu`` there, and orders go over MLLP from a thread that entered it.

The test process reaches PostgreSQL through its Unix socket (a file, outside any
network namespace) and reads the PACS and RIS folders directly.

``Site.stop`` kills every process of every namespace and deletes the namespaces, also
after a failed test; a site left behind by a killed test run is removed by the next.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import tomli_w

from tests.support.dicom_peers import DCMTK_ENV
from tests.support.e2e import SyntheticStudy
from tests.support.hl7_client import EB, Ack, order_message

REPOSITORY = Path(__file__).resolve().parents[2]
HAPROXY_CONFIG = REPOSITORY / "deploy" / "haproxy.cfg"
PG_BIN = Path("/usr/lib/postgresql")
NODE_AE, MODALITY_AE, PACS_AE = "MMBCD", "MODALITY", "PACS"
DICOM_PORT, HL7_PORT, HTTP_PORT, PACS_PORT, RIS_PORT = 11112, 2575, 8080, 11113, 2576
PREFIX = "mmsite"
# Seconds a modality waits for an answer before it gives the association up: a host that
# died mid-association never answers, and its TCP connection may never close.
ANSWER_TIMEOUT = 15
CLONE_NEWNET = 0x40000000
T = TypeVar("T")
# What deploy/SCALE-OUT.md asks of the site's PostgreSQL: a host that vanishes (no FIN,
# no RST) must not keep its open transactions, and the row locks they hold, for the
# kernel's default two hours. Idle connections are probed after 5 s, every 2 s, given up
# after 3 silent probes; unacknowledged data is given up after 10 s.
DEAD_CLIENT_SETTINGS = ("-c", "tcp_keepalives_idle=5", "-c", "tcp_keepalives_interval=2",
                        "-c", "tcp_keepalives_count=3", "-c", "tcp_user_timeout=10000")


def site_unavailable() -> str | None:
    """Why a site cannot be built here, or None."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    for tool in ("ip", "haproxy", "storescu", "storescp", "unshare", "runuser", "nsenter"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed"
    if _postgres_bin() is None:
        return "no PostgreSQL server binaries under /usr/lib/postgresql"
    probe = f"{PREFIX}probe{os.getpid()}"
    made = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True)
    if made.returncode != 0:
        return f"ip netns add is not permitted here: {made.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", probe], capture_output=True)
    return None


def _postgres_bin() -> Path | None:
    versions = sorted(PG_BIN.glob("*/bin/postgres"), key=lambda p: int(p.parts[-3]))
    return versions[-1].parent if versions else None


def _run(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(list(args), capture_output=True, text=True)
    if check and result.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed: {result.stderr.strip()}")
    return result


def remove_abandoned_sites() -> None:
    """Delete the namespaces of sites whose test process is gone."""
    for line in _run("ip", "netns", "list").stdout.splitlines():
        name = line.split()[0] if line.strip() else ""
        if not name.startswith(PREFIX) or "-" not in name:
            continue
        owner = name[len(PREFIX):].split("-")[0]
        if owner.isdigit() and not Path(f"/proc/{owner}").exists():
            _kill_namespace(name)
            _run("ip", "netns", "del", name, check=False)


def _kill_namespace(name: str) -> None:
    pids = _run("ip", "netns", "pids", name, check=False).stdout.split()
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, ValueError):
            os.kill(int(pid), signal.SIGKILL)


def in_namespace(namespace: str, work: Callable[[], T]) -> T:
    """Run ``work`` on a thread that entered the network namespace: the sockets it opens
    live there (the thread's own network namespace changes, the process's does not)."""
    done: Future[T] = Future()

    def enter_and_run() -> None:
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            with open(f"/var/run/netns/{namespace}") as handle:
                if libc.setns(handle.fileno(), CLONE_NEWNET) != 0:
                    raise OSError(ctypes.get_errno(), f"setns into {namespace}")
            done.set_result(work())
        except BaseException as exc:  # noqa: BLE001 - handed to the caller
            done.set_exception(exc)

    thread = threading.Thread(target=enter_and_run, name=f"in-{namespace}", daemon=True)
    thread.start()
    return done.result(timeout=300)


@dataclass
class NodeHost:
    """One node host: its namespace, address, configuration and ``serve`` process."""

    name: str  # host-a, host-b: also the host name its processes see
    namespace: str
    address: str
    config_path: Path
    log_path: Path
    process: subprocess.Popen[bytes] | None = None
    env: dict[str, str] = field(default_factory=dict)

    def start(self) -> None:
        log = self.log_path.open("ab")
        command = (f"hostname {self.name} && exec {sys.executable} -m mmbcd_node "
                   f"--config {self.config_path} serve")
        self.process = subprocess.Popen(
            ["ip", "netns", "exec", self.namespace, "unshare", "--uts", "--mount",
             "--propagation", "private", "sh", "-c", command],
            stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **self.env},
            cwd=REPOSITORY)
        log.close()

    def kill(self) -> None:
        """SIGKILL every process of the host: no clean-up of any kind runs."""
        _kill_namespace(self.namespace)
        if self.process is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.kill()

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """``mmbcd-node ARGS`` run on this host (its namespace and host name)."""
        command = " ".join([f"hostname {self.name} && exec", sys.executable, "-m",
                            "mmbcd_node", "--config", str(self.config_path),
                            *(f"'{a}'" for a in args)])
        result = subprocess.run(
            ["ip", "netns", "exec", self.namespace, "unshare", "--uts", "sh", "-c", command],
            capture_output=True, text=True, timeout=180, env={**os.environ, **self.env},
            cwd=REPOSITORY)
        if check and result.returncode != 0:
            raise AssertionError(f"mmbcd-node {' '.join(args)} on {self.name} exited "
                                 f"{result.returncode}:\n{result.stdout}\n{result.stderr}")
        return result

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def storage_mount(self, root: Path, read_only: bool) -> None:
        """Remount the storage root read-only (or writable again) for this host alone,
        inside its serve process's mount namespace."""
        assert self.process is not None
        target = str(self.process.pid)  # ip, unshare and sh each exec the next
        mode = "ro" if read_only else "rw"
        mounted = _run("nsenter", "-t", target, "-m", "findmnt", "-n", str(root), check=False)
        if not mounted.stdout.strip():
            _run("nsenter", "-t", target, "-m", "mount", "--bind", str(root), str(root))
        _run("nsenter", "-t", target, "-m", "mount", "-o", f"remount,bind,{mode}", str(root))


class Site:
    """The whole site; ``start`` builds it, ``stop`` removes every trace of it."""

    def __init__(self, folder: Path, settings: dict[str, Any] | None = None) -> None:
        self.folder = folder
        self.id = f"{PREFIX}{os.getpid()}-{random.randrange(16**3):03x}"
        self.octet = random.randrange(16, 250)
        self.settings = settings or {}
        self.storage_root = folder / "storage"
        self.pacs_dir = folder / "pacs"
        self.ris_dir = folder / "ris"
        self.namespaces: list[str] = []
        self.processes: list[subprocess.Popen[bytes]] = []
        self.pg_dir: Path | None = None
        self.hosts: dict[str, NodeHost] = {}
        self._ris_server: Any = None

    # -- addresses ---------------------------------------------------------------------

    def address(self, box: str) -> str:
        last = {"db": 2, "host-a": 3, "host-b": 4, "lb": 5, "peers": 6}[box]
        return f"10.231.{self.octet}.{last}"

    def namespace(self, box: str) -> str:
        return f"{self.id}-{box}"

    @property
    def socket_dir(self) -> Path:
        assert self.pg_dir is not None
        return self.pg_dir / "socket"

    @property
    def db_url(self) -> str:
        """The database as the test process reaches it (the Unix socket)."""
        return f"postgresql+psycopg://root@/site?host={self.socket_dir}"

    @property
    def node_db_url(self) -> str:
        """The database as the hosts reach it (TCP to the db namespace)."""
        return f"postgresql+psycopg://root@{self.address('db')}:5432/site"

    # -- building and removing ---------------------------------------------------------

    def start(self) -> Site:
        remove_abandoned_sites()
        try:
            self._network()
            self._database()
            self._peers()
            self._hosts()
            self._balancer()
        except BaseException:
            self.stop()
            raise
        return self

    def _network(self) -> None:
        switch = self.namespace("sw")
        self._add_namespace(switch)
        _run("ip", "-n", switch, "link", "add", "br0", "type", "bridge")
        _run("ip", "-n", switch, "link", "set", "br0", "up")
        for box in ("db", "host-a", "host-b", "lb", "peers"):
            namespace = self.namespace(box)
            self._add_namespace(namespace)
            port = f"v-{box}"
            _run("ip", "-n", switch, "link", "add", port, "type", "veth", "peer", "name", "eth0",
                 "netns", namespace)
            _run("ip", "-n", switch, "link", "set", port, "master", "br0", "up")
            _run("ip", "-n", namespace, "addr", "add", f"{self.address(box)}/24", "dev", "eth0")
            _run("ip", "-n", namespace, "link", "set", "eth0", "up")
            _run("ip", "-n", namespace, "link", "set", "lo", "up")

    def _add_namespace(self, name: str) -> None:
        _run("ip", "netns", "add", name)
        self.namespaces.append(name)

    def _database(self) -> None:
        binaries = _postgres_bin()
        assert binaries is not None
        self.pg_dir = Path(tempfile.mkdtemp(prefix=f"{self.id}-pg-"))
        self.socket_dir.mkdir()
        shutil.chown(self.pg_dir, "postgres")
        shutil.chown(self.socket_dir, "postgres")
        data = self.pg_dir / "data"
        _run("runuser", "-u", "postgres", "--", str(binaries / "initdb"), "-D", str(data),
             "-A", "trust", "-U", "root", "--no-sync")
        with (data / "pg_hba.conf").open("a") as hba:
            hba.write(f"host all all 10.231.{self.octet}.0/24 trust\n")
        self.start_database()
        _run(str(binaries / "createdb"), "-h", str(self.socket_dir), "-U", "root",
             "site")
        from mmbcd_node.db import migrate

        migrate.upgrade(self.db_url)

    def start_database(self) -> None:
        binaries = _postgres_bin()
        assert binaries is not None and self.pg_dir is not None
        log = (self.folder / "postgresql.log").open("ab")
        self.database = subprocess.Popen(
            ["ip", "netns", "exec", self.namespace("db"), "runuser", "-u", "postgres", "--",
             str(binaries / "postgres"), "-D", str(self.pg_dir / "data"), "-k",
             str(self.socket_dir), "-h", self.address("db"), "-p", "5432", "-c", "fsync=off",
             "-c", "max_connections=300", *DEAD_CLIENT_SETTINGS],
            stdout=log, stderr=subprocess.STDOUT)
        log.close()
        self.processes.append(self.database)
        _wait(lambda: _run("pg_isready", "-q", "-h", str(self.socket_dir), "-p", "5432",
                           check=False).returncode == 0, 30, "PostgreSQL to accept connections")

    def stop_database(self, mode: str = "fast") -> None:
        """Stop PostgreSQL: ``fast`` (SIGINT, connections closed) or ``immediate`` (SIGQUIT)."""
        assert self.pg_dir is not None
        # The postmaster runs under runuser; its own pid file names it.
        postmaster = int((self.pg_dir / "data" / "postmaster.pid").read_text().split()[0])
        os.kill(postmaster, signal.SIGINT if mode == "fast" else signal.SIGQUIT)
        self.database.wait(30)

    def _peers(self) -> None:
        self.pacs_dir.mkdir(parents=True, exist_ok=True)
        self.ris_dir.mkdir(parents=True, exist_ok=True)
        log = (self.folder / "storescp.log").open("ab")
        self.processes.append(subprocess.Popen(
            ["ip", "netns", "exec", self.namespace("peers"), "storescp", "--aetitle", PACS_AE,
             "--output-directory", str(self.pacs_dir), "--unique-filenames", "+xa",
             str(PACS_PORT)], stdout=log, stderr=subprocess.STDOUT, env=DCMTK_ENV))
        log.close()
        self._ris_server = in_namespace(self.namespace("peers"), self._start_ris)

    def _start_ris(self) -> Any:
        from tests.support.ris import recording_mllp_server

        return recording_mllp_server((self.address("peers"), RIS_PORT), self.ris_dir)

    def _hosts(self) -> None:
        from tests.support.node import deep_merge

        self.storage_root.mkdir(parents=True, exist_ok=True)
        lb = self.address("lb")
        for name in ("host-a", "host-b"):
            settings = deep_merge({
                "database": {"url": self.node_db_url},
                "storage": {"root": str(self.storage_root)},
                "dicom": {"ae_title": NODE_AE, "host": "0.0.0.0", "port": DICOM_PORT,
                          "min_free_bytes": 0,
                          "allowed_calling_aes": [f"{MODALITY_AE}@{lb}"]},
                "hl7": {"host": "0.0.0.0", "port": HL7_PORT, "allowed_senders": [lb],
                        "results": {"host": self.address("peers"), "port": RIS_PORT}},
                "http": {"host": "0.0.0.0", "port": HTTP_PORT},
                "model": {"device": "cpu"},
                "destinations": [{"name": "pacs", "ae_title": PACS_AE,
                                  "host": self.address("peers"), "port": PACS_PORT,
                                  "backoff_seconds": 0.5}],
            }, self.settings)
            config_path = self.folder / f"{name}.toml"
            config_path.write_text(tomli_w.dumps(settings))
            host = NodeHost(name=name, namespace=self.namespace(name), address=self.address(name),
                            config_path=config_path, log_path=self.folder / f"{name}.log")
            self.hosts[name] = host
            host.start()
        for host in self.hosts.values():
            self.wait_healthy(host, timeout=240)

    def _balancer(self) -> None:
        log = (self.folder / "haproxy.log").open("ab")
        self.stats_socket = self.folder / "haproxy.sock"
        env = {**os.environ, "MMBCD_LB_ADDRESS": self.address("lb"),
               "MMBCD_HOST_A": self.address("host-a"), "MMBCD_HOST_B": self.address("host-b"),
               "MMBCD_LB_STATS": str(self.stats_socket)}
        self.balancer = subprocess.Popen(
            ["ip", "netns", "exec", self.namespace("lb"), "haproxy", "-db", "-f",
             str(HAPROXY_CONFIG)], stdout=log, stderr=subprocess.STDOUT, env=env)
        log.close()
        self.processes.append(self.balancer)
        _wait(lambda: self.balanced() == {"host-a", "host-b"}, 30,
              "the balancer to see both hosts up")

    def stop(self) -> None:
        for host in self.hosts.values():
            host.stop()
        if self._ris_server is not None:
            self._ris_server.shutdown()
            self._ris_server.server_close()
        for namespace in self.namespaces:
            _kill_namespace(namespace)
        for process in self.processes:
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(10)
        for namespace in reversed(self.namespaces):
            _run("ip", "netns", "del", namespace, check=False)
        self.namespaces.clear()
        if self.pg_dir is not None:
            shutil.rmtree(self.pg_dir, ignore_errors=True)

    # -- what the test does ------------------------------------------------------------

    def balanced(self) -> set[str]:
        """The hosts the balancer's DICOM backend has up now (its health checks)."""
        up: set[str] = set()
        with contextlib.suppress(OSError):
            for line in self._stats("show servers state mmbcd_dicom").splitlines():
                parts = line.split()
                # be_id be_name srv_id srv_name srv_addr srv_op_state ...; 2 = running
                if len(parts) > 5 and parts[1] == "mmbcd_dicom" and parts[5] == "2":
                    up.add(parts[3])
        return up

    def _stats(self, command: str) -> str:
        with socket.socket(socket.AF_UNIX) as stats:
            stats.settimeout(5)
            stats.connect(str(self.stats_socket))
            stats.sendall(command.encode() + b"\n")
            chunks = []
            while chunk := stats.recv(65536):
                chunks.append(chunk)
        return b"".join(chunks).decode()

    def push(self, files: Sequence[Path]) -> set[Path]:
        """C-STORE ``files`` through the balancer with dcmtk ``storescu`` in one
        association, as a modality does; return the files it got Success for."""
        try:
            result = subprocess.run(
                ["ip", "netns", "exec", self.namespace("peers"), "storescu", "-v", "-aet",
                 MODALITY_AE, "-aec", NODE_AE, "--acse-timeout", str(ANSWER_TIMEOUT),
                 "--dimse-timeout", str(ANSWER_TIMEOUT), self.address("lb"), str(DICOM_PORT),
                 *map(str, files)], capture_output=True, text=True, timeout=300,
                env=DCMTK_ENV)
        except subprocess.TimeoutExpired as expired:
            return acknowledged(_text(expired.stdout) + _text(expired.stderr))
        return acknowledged(result.stdout + result.stderr)

    def orders(self, studies: Sequence[SyntheticStudy], history: str,
               ack_timeout: float = ANSWER_TIMEOUT) -> list[Ack]:
        """The studies' orders (ORM^O01) over MLLP through the balancer with the ``hl7``
        package's ``mllp_send``, as a RIS interface engine sends them: one ACK each, none
        when they were not all answered within ``ack_timeout`` seconds."""
        path = self.folder / f"orders-{studies[0].accession}.hl7"
        path.write_text("\n".join(
            order_message(f"MSG{s.accession}", placer=f"PL{s.accession}",
                          patient_id=s.patient_id, accession=s.accession,
                          study_uid=s.study_uid, clinical=history).replace("\r", "\n")
            for s in studies))
        tool = shutil.which("mllp_send") or str(Path(sys.executable).with_name("mllp_send"))
        try:
            result = subprocess.run(
                ["ip", "netns", "exec", self.namespace("peers"), tool, "--loose", "--port",
                 str(HL7_PORT), "--file", str(path), self.address("lb")],
                capture_output=True, timeout=ack_timeout)
        except subprocess.TimeoutExpired:  # no ACK in time: an interface engine resends
            return []
        return [Ack.parse(frame.strip(b"\x0b\x1c\r\n")) for frame in result.stdout.split(EB)
                if frame.strip(b"\x0b\x1c\r\n")]

    def wait_healthy(self, host: NodeHost, timeout: float) -> None:
        def healthy() -> bool:
            if host.process is not None and host.process.poll() is not None:
                raise AssertionError(f"{host.name} exited:\n{host.log_text()[-4000:]}")
            return in_namespace(host.namespace, lambda: _healthz_ok(host.address))

        _wait(healthy, timeout, f"{host.name} to report healthy")

    def all_hosts_up(self) -> None:
        """Start (and plug back) any host that is down; wait until the balancer uses all."""
        for host in self.hosts.values():
            if host.process is None or host.process.poll() is not None:
                self.link(host, up=True)
                host.start()
            self.wait_healthy(host, timeout=240)
        _wait(lambda: self.balanced() == set(self.hosts), 30, "the balancer to use every host")

    def cut(self, host: NodeHost, *, restore: bool = False) -> None:
        """Cut (or restore) the network between ``host`` and the database only."""
        action = "del" if restore else "add"
        _run("ip", "-n", host.namespace, "route", action, "blackhole",
             f"{self.address('db')}/32")

    def link(self, host: NodeHost, up: bool) -> None:
        """Pull (or plug back) the host's network cable."""
        _run("ip", "-n", self.namespace("sw"), "link", "set", f"v-{host.name}",
             "up" if up else "down")


def healthz(host: NodeHost) -> dict[str, Any]:
    """The host's ``/healthz`` report (healthy or not)."""
    import json
    import urllib.error
    import urllib.request

    def fetch() -> dict[str, Any]:
        url = f"http://{host.address}:{HTTP_PORT}/healthz"
        try:
            with urllib.request.urlopen(url, timeout=5) as reply:
                return dict(json.loads(reply.read()))
        except urllib.error.HTTPError as error:
            return dict(json.loads(error.read()))

    return in_namespace(host.namespace, fetch)


def _healthz_ok(address: str) -> bool:
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(f"http://{address}:{HTTP_PORT}/healthz", timeout=2) as reply:
            return bool(reply.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def _text(output: str | bytes | None) -> str:
    return output.decode(errors="replace") if isinstance(output, bytes) else output or ""


def acknowledged(storescu_output: str) -> set[Path]:
    """The files dcmtk ``storescu -v`` reports a Success C-STORE response for."""
    done: set[Path] = set()
    sending: Path | None = None
    for line in storescu_output.splitlines():
        if "Sending file: " in line:
            sending = Path(line.split("Sending file: ", 1)[1].strip())
        elif "Received Store Response" in line and sending is not None:
            if "(Success)" in line:
                done.add(sending)
            sending = None
    return done


def _wait(predicate: Callable[[], object], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


@contextlib.contextmanager
def running_site(folder: Path, settings: dict[str, Any] | None = None) -> Iterator[Site]:
    site = Site(folder, settings)
    site.start()
    try:
        yield site
    finally:
        site.stop()
