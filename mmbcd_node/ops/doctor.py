"""``mmbcd-node doctor``: check an installation end to end and say how to fix what is wrong.

Each check returns a ``Finding``: what was checked, whether it passed, what was seen,
and (when it failed) what to do. The checks talk to the real things: the database,
the storage root, the running node's listeners (C-ECHO to our own AE title, an MLLP
connection, ``/healthz``), the model bundle's digests, each destination (C-ECHO) and
a stream syslog collector.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import socket
import tempfile
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from mmbcd_node.config import DestinationConfig, NodeConfig
from mmbcd_node.db import migrate
from mmbcd_node.ops.health import local_address, tcp_check

LISTENERS = ("dicom", "hl7", "http")


@dataclass(frozen=True)
class Finding:
    check: str
    ok: bool
    detail: str
    fix: str = ""


def _guard(check: str, fix: str, probe: Callable[[], Finding]) -> Finding:
    """Run ``probe``; an unexpected exception becomes a failed finding instead of a crash."""
    return _guard_all(check, fix, lambda: [probe()])[0]


def _guard_all(check: str, fix: str, probe: Callable[[], list[Finding]]) -> list[Finding]:
    """``_guard`` for a probe that returns several findings."""
    try:
        return probe()
    except Exception as exc:  # noqa: BLE001 - doctor reports every failure, it never stops
        return [Finding(check, False, f"{type(exc).__name__}: {exc}", fix)]


def database_findings(config: NodeConfig, engine: Engine) -> list[Finding]:
    """Reachable, and at the newest migration."""
    try:
        current = migrate.current_revision(engine)
    except SQLAlchemyError as exc:
        return [Finding("database", False, f"cannot connect to {engine.url.render_as_string()}: "
                        f"{type(getattr(exc, 'orig', None) or exc).__name__}",
                        "start the database server or correct [database] url")]
    head = migrate.head_revision(config.database.url)
    if current != head:
        return [Finding("database", False, f"schema at revision {current}, code expects {head}",
                        "run `mmbcd-node db upgrade`")]
    return [Finding("database", True, f"{engine.dialect.name} at revision {current} (newest)")]


def storage_findings(config: NodeConfig) -> list[Finding]:
    """The storage root exists, is writable, and has more free space than the floor."""
    root = Path(config.storage.root)
    if not root.is_dir():
        return [Finding("storage", False, f"storage root {root} does not exist",
                        f"create it: mkdir -p {root} (owned by the user running the node)")]
    try:
        with tempfile.NamedTemporaryFile(dir=root, prefix=".doctor-") as probe:
            probe.write(b"ok")
            probe.flush()
            os.fsync(probe.fileno())
    except OSError as exc:
        return [Finding("storage", False, f"cannot write under {root}: {exc.strerror}",
                        f"give the node's user write access to {root}")]
    free = shutil.disk_usage(root).free
    floor = config.dicom.min_free_bytes
    disk = Finding("disk", free >= floor, f"{free / 1e9:.1f} GB free under {root} "
                   f"(floor {floor / 1e9:.1f} GB)",
                   "" if free >= floor else "free space (`mmbcd-node purge`, shorter [retention]) "
                   "or lower [dicom] min_free_bytes")
    return [Finding("storage", True, f"{root} is writable"), disk]


def listener_findings(config: NodeConfig, expected: Sequence[str]) -> Iterator[Finding]:
    """The running node answers: C-ECHO to our AE, an MLLP connection, ``/healthz``."""
    start = "start the node (`mmbcd-node serve`) or check [{0}] host/port"
    if "dicom" in expected:
        yield _guard("dicom listener", start.format("dicom"),
                     lambda: _echo_ourselves(config, start.format("dicom")))
    if "hl7" in expected:
        check = tcp_check("hl7", config.hl7.host, config.hl7.port)
        yield Finding("hl7 listener", check.ok, f"MLLP {check.detail}",
                      "" if check.ok else start.format("hl7"))
    if "http" in expected and config.http.enabled:
        yield _guard("http /healthz", start.format("http"), lambda: _healthz(config))


def _echo_ourselves(config: NodeConfig, fix: str) -> Finding:
    """C-ECHO our own listener, calling as our own AE title from this machine.

    Where ``[dicom] allowed_calling_aes`` does not admit that, the listener must refuse
    it: an A-ASSOCIATE-RJ "calling AE title not recognised" then proves the listener
    answers and enforces the list, and any other answer is a fault.
    """
    from mmbcd_node.receive.admission import CALLING_AE_NOT_RECOGNISED, Admission
    from mmbcd_node.send.store_scu import AssociationRejected, echo

    check = "dicom listener"
    host = local_address(config.dicom.host)
    ourselves = DestinationConfig(name="this node", ae_title=config.dicom.ae_title,
                                  host=host, port=config.dicom.port)
    expected = Admission(config.dicom, Path(config.storage.root)).check(
        called_ae=config.dicom.ae_title, calling_ae=config.dicom.ae_title, address=host)
    if expected is None or expected.diagnostic != CALLING_AE_NOT_RECOGNISED:
        return _echo(check, ourselves, config, fix)
    where = f"{config.dicom.ae_title}@{host}:{config.dicom.port}"
    try:
        echo(ourselves, config.dicom)
    except AssociationRejected as rejected:
        if rejected.reason == CALLING_AE_NOT_RECOGNISED:
            return Finding(check, True, f"{where} answers, and refused our own calling AE "
                           f"as its configuration says it must ({expected.reason})")
        return Finding(check, False, str(rejected), "the node's log says why it refused")
    except (ConnectionError, TimeoutError, OSError) as exc:
        return Finding(check, False, f"no answer from {where}: {exc}", fix)
    return Finding(check, False, f"{where} accepted calling AE {config.dicom.ae_title!r}, "
                   "which allowed_calling_aes does not list: the running node has another "
                   "configuration", "restart the node with this configuration")


def _healthz(config: NodeConfig) -> Finding:
    url = f"http://{local_address(config.http.host)}:{config.http.port}/healthz"
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            body = json.loads(response.read())
    except urllib.error.HTTPError as error:
        body = json.loads(error.read() or b"{}")
        failed = [f"{name}: {c.get('detail')}" for name, c in body.get("checks", {}).items()
                  if c.get("required") and not c.get("ok")]
        return Finding("http /healthz", False, f"{url} says unhealthy: " + "; ".join(failed),
                       "fix the failed checks named here; the node's log says more")
    return Finding("http /healthz", True, f"{url} says {body.get('status')}")


def _echo(check: str, destination: DestinationConfig, config: NodeConfig,
          fix: str | None = None) -> Finding:
    from mmbcd_node.send.store_scu import echo

    where = f"{destination.ae_title}@{destination.host}:{destination.port}"
    try:
        status = echo(destination, config.dicom)
    except (ConnectionError, TimeoutError, OSError) as exc:
        return Finding(check, False, f"no C-ECHO from {where}: {exc}",
                       fix or f"check that {where} is up and accepts our AE title "
                       f"{config.dicom.ae_title}")
    if status != 0:
        return Finding(check, False, f"C-ECHO to {where} answered status 0x{status:04X}",
                       "check the peer's configuration for our AE title")
    return Finding(check, True, f"C-ECHO to {where} succeeded")


def bundle_findings(config: NodeConfig) -> list[Finding]:
    """The model bundle is complete and unaltered (every file's SHA-256 matches)."""
    from ml.manifest import BundleError, default_bundle_path, read_manifest

    path = config.model.bundle or default_bundle_path()
    try:
        manifest = read_manifest(path, verify=True)
    except BundleError as exc:
        return [Finding("model bundle", False, str(exc),
                        "reinstall or re-export the bundle, or correct [model] bundle")]
    return [Finding("model bundle", True, f"{manifest.get('name')} {manifest.get('version')} "
                    f"digest {manifest.get('digest')} ({path})")]


def syslog_findings(config: NodeConfig) -> list[Finding]:
    """A TCP/TLS audit collector accepts connections (UDP cannot be checked)."""
    syslog = config.audit.syslog
    if syslog is None:
        return []
    if syslog.transport == "udp":
        return [Finding("audit syslog", True, f"UDP to {syslog.host}:{syslog.port} "
                        "(connectionless; not verifiable)")]
    try:
        with socket.create_connection((syslog.host, syslog.port), timeout=5):
            pass
    except OSError as exc:
        return [Finding("audit syslog", False, f"{syslog.transport} {syslog.host}:{syslog.port}: "
                        f"{exc.strerror or exc}", "start the collector or correct [audit.syslog]; "
                        "audit events wait in the database until it answers")]
    return [Finding("audit syslog", True, f"{syslog.transport} {syslog.host}:{syslog.port} "
                    "accepts connections")]


def retention_findings(config: NodeConfig) -> list[Finding]:
    """The retention schedule is a valid cron expression; when it fires next."""
    from apscheduler.triggers.cron import CronTrigger

    schedule = config.retention.schedule
    try:
        trigger = CronTrigger.from_crontab(schedule)
    except ValueError as exc:
        return [Finding("retention", False, f"schedule {schedule!r} is not cron: {exc}",
                        'write [retention] schedule as cron, e.g. "0 3 * * *"')]
    upcoming = trigger.get_next_fire_time(None, datetime.now().astimezone())
    return [Finding("retention", True, f"images kept {config.retention.delivered_days} days "
                    f"after delivery, {config.retention.undelivered_days} days otherwise; "
                    f"next scheduled purge {upcoming:%Y-%m-%d %H:%M %Z}")]


CLOCK_TOLERANCE_MS = 1000.0


def cluster_findings(config: NodeConfig, engine: Engine) -> list[Finding]:
    """This host's clock against the database's (the clock leases use), and whether the
    live role processes of every host see one storage root, run one model bundle and
    keep their clocks within a second of the database's."""
    from mmbcd_node.db.utc import clock_offset_ms
    from mmbcd_node.ops.cluster import role_processes
    from mmbcd_node.ops.storage_identity import storage_identity

    with Session(engine) as session:
        offset_ms = clock_offset_ms(session)
        live = [p.beat for p in role_processes(session, config.worker.heartbeat_seconds)
                if p.up]
    here = socket.gethostname()
    findings = [Finding(
        "clock", abs(offset_ms) <= CLOCK_TOLERANCE_MS,
        f"leases and heartbeats use the {engine.dialect.name} server's clock; this host "
        f"({here}) is {offset_ms:+.0f} ms from it",
        "" if abs(offset_ms) <= CLOCK_TOLERANCE_MS else
        "synchronise this host's clock (chrony or systemd-timesyncd against the site's NTP)")]
    if not live:
        return findings
    own_root = storage_identity(Path(config.storage.root))
    roots = {b.host: b.storage_id for b in live}
    roots.setdefault(here, own_root)
    findings.append(_same_everywhere(
        "hosts: storage root", roots, f"every host sees the storage root {own_root}",
        "mount the same export at [storage] root on every host"))
    bundles = {b.host: b.bundle_digest for b in live if b.role == "worker"}
    if bundles:
        findings.append(_same_everywhere(
            "hosts: model bundle", bundles, "every worker runs bundle {value}",
            "install the same bundle on every worker host and restart them"))
    skewed = sorted({f"{b.host} {b.clock_offset_ms:+.0f} ms" for b in live
                     if b.clock_offset_ms is not None
                     and abs(b.clock_offset_ms) > CLOCK_TOLERANCE_MS})
    findings.append(Finding(
        "hosts: clocks", not skewed,
        f"clocks off the database's by more than a second: {', '.join(skewed)}" if skewed
        else f"every host's clock within a second of the database's ({len(roots)} host(s))",
        "synchronise those hosts' clocks" if skewed else ""))
    return findings


def _same_everywhere(check: str, by_host: dict[str, str | None], agreed: str,
                     fix: str) -> Finding:
    values = set(by_host.values())
    if len(values) == 1:
        (value,) = values
        return Finding(check, value is not None, agreed.format(value=value) if value
                       else f"no host could read its identity ({', '.join(sorted(by_host))})",
                       "" if value else fix)
    listed = "; ".join(f"{host}: {value or 'none'}" for host, value in sorted(by_host.items()))
    return Finding(check, False, f"hosts differ: {listed}", fix)


def run_doctor(config: NodeConfig, engine: Engine,
               expected: Sequence[str] = LISTENERS) -> list[Finding]:
    """Every check, in the order an operator would fix them."""
    findings = [Finding("config", True, f"{config.source} loaded")]
    findings += database_findings(config, engine)
    findings += storage_findings(config)
    findings += listener_findings(config, expected)
    findings.append(_guard("model bundle", "reinstall the package or correct [model] bundle",
                           lambda: bundle_findings(config)[0]))
    for destination in config.destinations:
        check = f"destination {destination.name}"
        findings.append(_guard(check, "check [[destinations]]",
                               functools.partial(_echo, check, destination, config)))
    findings += syslog_findings(config)
    findings += retention_findings(config)
    if findings[1].ok:  # the database answers
        findings += _guard_all("hosts", "check the database", lambda: cluster_findings(config,
                                                                                      engine))
    return findings
