"""What a modality and a RIS do against a site, and what must hold after a fault.

``Traffic`` pushes studies through the balancer on a thread of its own, as a modality
and a RIS do: each study's images in one association, then its order; a push or an
order that fails is sent again (the whole study, as modalities resend), until every
image has a Success and every order an AA. It records every acknowledged image.

``check_site`` asserts what a hospital asks after any fault: nothing acknowledged is
lost (every Success'd image is in SQL and on storage), every study has exactly one SR
at the PACS and no SOP Instance UID arrived twice, every result has one ORU at the RIS,
and ``audit verify`` passes.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pydicom
from pydicom.uid import ExplicitVRLittleEndian

from mmbcd_node.db.models import Instance, Job, JobState, Study
from mmbcd_node.db.result_models import (
    Delivery,
    DeliveryState,
    Hl7ResultMessage,
    Hl7ResultState,
    Result,
)
from tests.support.dicom_peers import db_rows
from tests.support.e2e import HISTORY, SyntheticStudy, make_study
from tests.support.site import Site

SR_CLASSES = {"1.2.840.10008.5.1.4.1.1.88.22", "1.2.840.10008.5.1.4.1.1.88.33",
              "1.2.840.10008.5.1.4.1.1.88.34"}


def studies(folder: Path, first: int, count: int) -> list[SyntheticStudy]:
    return [make_study(folder, first + n, rows=256, cols=208,
                       transfer_syntax=ExplicitVRLittleEndian) for n in range(count)]


@dataclass
class Traffic:
    """Studies pushed through the balancer by a modality and a RIS that retry."""

    site: Site
    studies: list[SyntheticStudy]
    acknowledged: set[Path] = field(default_factory=set)
    retries: int = 0
    sent: list[str] = field(default_factory=list)  # study UIDs whose images and order are in
    error: BaseException | None = None

    def __post_init__(self) -> None:
        self._thread = threading.Thread(target=self._run, name="traffic", daemon=True)

    def start(self) -> Traffic:
        self._thread.start()
        return self

    def join(self, timeout: float) -> None:
        self._thread.join(timeout)
        if self._thread.is_alive():
            raise AssertionError(f"the modality still sends after {timeout:.0f}s")
        if self.error is not None:
            raise self.error

    def _run(self) -> None:
        try:
            for study in self.studies:
                self._deliver(study)
                self.sent.append(study.study_uid)
        except BaseException as exc:  # noqa: BLE001 - re-raised by join
            self.error = exc

    def _deliver(self, study: SyntheticStudy) -> None:
        deadline = time.monotonic() + 180
        while not set(study.files) <= self.acknowledged:
            if time.monotonic() > deadline:
                raise AssertionError(f"{study.accession} never acknowledged whole")
            done = self.site.push(study.files)
            self.acknowledged |= done
            if not set(study.files) <= done:
                self.retries += 1
                time.sleep(0.5)  # a modality's retry interval
        while True:
            if time.monotonic() > deadline:
                raise AssertionError(f"the order of {study.accession} never acknowledged")
            acks = self.site.orders([study], HISTORY)
            if acks and acks[0].code == "AA":
                return
            self.retries += 1
            time.sleep(0.5)


def pacs_objects(site: Site) -> list[pydicom.Dataset]:
    return [pydicom.dcmread(path, stop_before_pixels=True)
            for path in sorted(site.pacs_dir.iterdir()) if path.is_file()]


def sr_arrivals(site: Site) -> dict[str, datetime]:
    """Study Instance UID -> when its first SR file appeared at the PACS."""
    arrivals: dict[str, datetime] = {}
    for path in site.pacs_dir.iterdir():
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        if str(ds.SOPClassUID) in SR_CLASSES:
            at = datetime.fromtimestamp(path.stat().st_mtime, UTC)
            uid = str(ds.StudyInstanceUID)
            arrivals[uid] = min(at, arrivals.get(uid, at))
    return arrivals


def running_on(site: Site, host: str) -> list[int]:
    """Ids of the jobs a worker of ``host`` holds now."""
    return [j.id for j in db_rows(site.db_url, Job, Job.state == JobState.RUNNING)
            if (j.lease_owner or "").startswith(f"worker@{host}:")]


def check_site(site: Site, traffic: Traffic) -> None:
    """Nothing acknowledged lost, one result set per study, one ORU per result, and an
    audit trail that verifies."""
    instances = {i.sop_instance_uid: i for i in db_rows(site.db_url, Instance)}
    for path in traffic.acknowledged:
        uid = str(pydicom.dcmread(path, stop_before_pixels=True).SOPInstanceUID)
        assert uid in instances, f"{path} was acknowledged but is not in SQL"
        stored = site.storage_root / instances[uid].path
        assert stored.is_file(), f"{path} was acknowledged but {stored} is missing"
    objects = pacs_objects(site)
    repeated = [u for u, n in Counter(str(o.SOPInstanceUID) for o in objects).items() if n > 1]
    assert not repeated, f"SOP Instance UIDs at the PACS more than once: {repeated}"
    per_study = Counter(str(o.StudyInstanceUID) for o in objects
                        if str(o.SOPClassUID) in SR_CLASSES)
    expected = {s.study_uid: 1 for s in traffic.studies}
    assert {uid: per_study.get(uid, 0) for uid in expected} == expected, \
        "exactly one SR per study at the PACS"
    results = db_rows(site.db_url, Result)
    messages = db_rows(site.db_url, Hl7ResultMessage)
    assert Counter(m.result_id for m in messages) == Counter(r.id for r in results), \
        "one ORU per result"
    received = Counter(path.name.split(".")[0] for path in site.ris_dir.iterdir())
    assert received == Counter(m.control_id for m in messages), \
        "the RIS got each ORU once"
    verified = site.hosts["host-b"].cli("audit", "verify", check=False)
    assert verified.returncode == 0, verified.stdout + verified.stderr


def settled(site: Site, expected_studies: int) -> bool:
    """Every study has a job that ended, and nothing waits to be sent to the PACS or
    the RIS: what the PACS and the RIS hold now is final."""
    jobs = db_rows(site.db_url, Job)
    if len({j.study_id for j in jobs}) < expected_studies:
        return False
    if any(j.state not in (JobState.DONE, JobState.FAILED) for j in jobs):
        return False
    if any(d.state == DeliveryState.PENDING for d in db_rows(site.db_url, Delivery)):
        return False
    return all(m.state != Hl7ResultState.PENDING
               for m in db_rows(site.db_url, Hl7ResultMessage))


@dataclass
class KillOutcome:
    traffic: Traffic
    held: list[int]  # the jobs host-a held when it died
    recovery_seconds: float  # from the kill to the last SR of a study host-a held


def kill_host_mid_stream(site: Site, batch: list[SyntheticStudy], host: str = "host-a",
                         timeout: float = 300) -> KillOutcome:
    """Push ``batch`` through a settled site's balancer; once ``host`` holds a job, pull
    its cable and SIGKILL every process on it; wait until the rest of the site has
    finished."""
    victim = site.hosts[host]
    before = len({j.study_id for j in db_rows(site.db_url, Job)})
    traffic = Traffic(site, batch).start()
    deadline = time.monotonic() + timeout
    while not (held := running_on(site, host)):
        if time.monotonic() > deadline:
            raise AssertionError(f"{host} never held a job")
        time.sleep(0.05)
    killed_at = datetime.now(UTC)
    site.link(victim, up=False)
    victim.kill()
    traffic.join(timeout)
    deadline = time.monotonic() + timeout
    while not settled(site, before + len(batch)):
        if time.monotonic() > deadline:
            raise AssertionError("the surviving host did not finish")
        time.sleep(0.2)
    arrivals = sr_arrivals(site)
    held_studies = {study_uid(site, j.study_id)
                    for j in db_rows(site.db_url, Job, Job.id.in_(held))}
    recovery = max((arrivals[uid] - killed_at).total_seconds() for uid in held_studies)
    return KillOutcome(traffic, held, recovery)


def study_uid(site: Site, study_id: int) -> str:
    (study,) = db_rows(site.db_url, Study, Study.id == study_id)
    return str(study.study_uid)
